package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/tools/testkit"
)

// logFiles returns the log files in dir: the current one and the rotated
// ones lumberjack named parley-<time>.log.
func logFiles(t *testing.T, dir string) (current string, rotated []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch name := e.Name(); {
		case name == "parley.log":
			current = filepath.Join(dir, name)
		case strings.HasPrefix(name, "parley-") && strings.HasSuffix(name, ".log"):
			rotated = append(rotated, filepath.Join(dir, name))
		}
	}
	return current, rotated
}

// jsonLines returns the "n" field of every line of path, failing on a line
// that is not a whole JSON object: a rotation must never cut a line.
func jsonLines(t *testing.T, path string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ns []int
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
			N   *int   `json:"n"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: a line is not JSON (%v): %.80q", filepath.Base(path), err, sc.Text())
		}
		if line.N != nil {
			ns = append(ns, *line.N)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ns
}

// writeLog writes lines of about 1 KiB numbered from 0 until size bytes
// went out, and returns how many it wrote.
func writeLog(log *zap.Logger, size int) int {
	pad := strings.Repeat("x", 1000)
	n := 0
	for written := 0; written < size; written += 1100 {
		log.Info("line", zap.Int("n", n), zap.String("pad", pad))
		n++
	}
	return n
}

// TestLogFileRotates: a log written past -log-max-size goes on in a fresh
// file while the full one is kept beside it under a timestamped name; both
// hold whole JSON lines, and no line is lost or written twice.
func TestLogFileRotates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log, stop, err := newLogger("auto", "info", io.Discard, logFile{path: filepath.Join(dir, "parley.log"), maxSizeMB: 1, maxBackups: 5})
	if err != nil {
		t.Fatal(err)
	}
	lines := writeLog(log, 1536<<10) // 1.5 MiB: one rotation
	stop()

	current, rotated := logFiles(t, dir)
	if current == "" || len(rotated) != 1 {
		t.Fatalf("after 1.5 MiB with -log-max-size 1: current %q, rotated %v; want parley.log and one parley-<time>.log", current, rotated)
	}
	for _, p := range append(rotated, current) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1<<20 {
			t.Errorf("%s holds %d bytes, past the 1 MiB maximum", filepath.Base(p), st.Size())
		}
	}
	// The rotated file holds the first lines, the current one the rest.
	got := append(jsonLines(t, rotated[0]), jsonLines(t, current)...)
	if len(got) != lines {
		t.Fatalf("the files hold %d lines, %d were logged", len(got), lines)
	}
	for i, n := range got {
		if n != i {
			t.Fatalf("line %d is line %d of the log: lost, repeated or out of order", i, n)
		}
	}
}

// TestLogFileKeepsBackups: rotated files beyond -log-max-backups are
// removed, the newest kept.
func TestLogFileKeepsBackups(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log, stop, err := newLogger("json", "info", io.Discard, logFile{path: filepath.Join(dir, "parley.log"), maxSizeMB: 1, maxBackups: 1})
	if err != nil {
		t.Fatal(err)
	}
	// 2.1 MiB in three parts: the rotations, at 1 and 2 MiB, fall in
	// different parts. lumberjack names a backup by the time of its
	// rotation to the millisecond, so each part starts in a new one.
	for range 3 {
		ms := time.Now().UnixMilli()
		testkit.Eventually(t, time.Second, func() bool { return time.Now().UnixMilli() > ms }, "the clock stands still")
		writeLog(log, 700<<10)
	}
	stop() // the last lines leave the buffer, past 2 MiB
	// Old files are removed by lumberjack's own goroutine after the rotation.
	var rotated []string
	testkit.Eventually(t, 10*time.Second, func() bool {
		_, rotated = logFiles(t, dir)
		return len(rotated) == 1
	}, "rotated files kept with -log-max-backups 1: %v", &rotated)
}

// TestLogFileFlag: with -log-file a running node writes its JSON log to
// that file, not to stderr.
func TestLogFileFlag(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "logs", "parley.log")
	n := startNode(t, modes()[0], "-log-file", path)
	testkit.Eventually(t, 10*time.Second, func() bool {
		data, _ := os.ReadFile(path)
		return strings.Contains(string(data), `"msg":"parley is serving"`)
	}, "no serving line in the -log-file within 10s")
	data, err := os.ReadFile(n.log)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), `"msg"`) {
		t.Errorf("with -log-file, stderr still holds log lines:\n%s", data)
	}
}

// TestLogFileFlagsRefused: rotation settings that cannot work stop the
// node at start, naming the flag.
func TestLogFileFlagsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"size_zero", []string{"-log-max-size", "0"}, "-log-max-size"},
		{"negative_backups", []string{"-log-max-backups", "-1"}, "-log-max-backups"},
		{"negative_age", []string{"-log-max-age", "-2"}, "-log-max-age"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseOptions(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseOptions(%v) = %v, want an error naming %s", tc.args, err, tc.want)
			}
		})
	}
	// A file that cannot be written is refused before the node serves.
	dir := t.TempDir()
	if _, _, err := newLogger("json", "info", io.Discard, logFile{path: dir, maxSizeMB: 1}); err == nil {
		t.Fatal("a directory given as -log-file was accepted")
	}
}

// TestMaxSendsInFlightFlag: the bound is taken within 1-256 and refused
// outside it with an error that names the flag.
func TestMaxSendsInFlightFlag(t *testing.T) {
	t.Parallel()
	o, err := parseOptions([]string{"-max-sends-in-flight", "3"}, io.Discard)
	if err != nil || o.maxSends != 3 {
		t.Fatalf("parseOptions(-max-sends-in-flight 3) = %d, %v; want 3", o.maxSends, err)
	}
	for _, v := range []string{"0", "-1", "257"} {
		if _, err := parseOptions([]string{"-max-sends-in-flight", v}, io.Discard); err == nil || !strings.Contains(err.Error(), "-max-sends-in-flight") {
			t.Errorf("parseOptions(-max-sends-in-flight %s) = %v, want an error naming the flag", v, err)
		}
	}
}
