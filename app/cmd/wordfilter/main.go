// Command wordfilter is a sample before-send hook: a business app that
// parley invokes through Dapr before storing each message. It refuses
// messages that contain a banned word, or masks the words with -mask.
//
// Run it with its own daprd (app-id "wordfilter", --app-port matching
// -addr), and start parley with -hook-app-id wordfilter.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "wordfilter:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wordfilter", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:7070", "listen address; give its port to daprd as --app-port")
	words := fs.String("words", "darn,heck", "comma-separated banned words, matched case-insensitively as whole words")
	mask := fs.Bool("mask", false, "replace banned words with asterisks instead of refusing the message")
	readyFile := fs.String("ready-file", "", "write the listen address here once serving")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f := newFilter(strings.Split(*words, ","), *mask)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /before-send", f.serve)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	if *readyFile != "" {
		_ = os.WriteFile(*readyFile, []byte(ln.Addr().String()), 0o644)
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type filter struct {
	banned map[string]bool
	mask   bool
}

func newFilter(words []string, mask bool) *filter {
	f := &filter{banned: map[string]bool{}, mask: mask}
	for _, w := range words {
		if w = strings.ToLower(strings.TrimSpace(w)); w != "" {
			f.banned[w] = true
		}
	}
	return f
}

// request and reply mirror parley's app/hook Request and Reply.
type request struct {
	Ctype string `json:"ctype"`
	Body  string `json:"body"`
}

type reply struct {
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	Body   string `json:"body,omitempty"`
}

func (f *filter) serve(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	var req request
	if err != nil || json.Unmarshal(data, &req) != nil {
		http.Error(w, "want a JSON before-send request", http.StatusBadRequest)
		return
	}
	out := reply{Action: "allow"}
	if req.Ctype != "json" {
		if masked, found := f.check(req.Body); found != "" {
			if f.mask {
				out = reply{Action: "rewrite", Body: masked}
			} else {
				out = reply{Action: "reject", Reason: fmt.Sprintf("the word %q is not allowed here", found)}
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// check returns body with banned words masked, and the first banned word.
func (f *filter) check(body string) (string, string) {
	var b strings.Builder
	var first string
	word := []rune{}
	flush := func() {
		if len(word) == 0 {
			return
		}
		w := string(word)
		if f.banned[strings.ToLower(w)] {
			if first == "" {
				first = strings.ToLower(w)
			}
			w = strings.Repeat("*", len(word))
		}
		b.WriteString(w)
		word = word[:0]
	}
	for _, r := range body {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			word = append(word, r)
			continue
		}
		flush()
		b.WriteRune(r)
	}
	flush()
	return b.String(), first
}
