package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// LaunchOptions say how to start a parley binary. Launch adds
// -ready-file; the rest of the command line is Args.
type LaunchOptions struct {
	// Binary is the parley executable, for example from Binary or Build.
	Binary string
	// Args are parley's flags, -addr among them.
	Args []string
	// Dir is the working directory; parley finds components/ from there.
	// Empty means the caller's.
	Dir string
	// Env is the whole environment; nil means the caller's.
	Env []string
	// LogPath receives parley's output, appended to, so that a restarted
	// process adds to the same file. Required.
	LogPath string
	// ReadyTimeout bounds the wait for parley to serve. Zero means 90 s.
	ReadyTimeout time.Duration
}

// Process is a parley that Launch started. Its methods are safe for
// concurrent use once Launch returned.
type Process struct {
	// Base is the URL parley serves on, as http://host:port.
	Base string
	// Cmd is the running command.
	Cmd *exec.Cmd
	// LogPath is the file that holds parley's output.
	LogPath string

	exited chan struct{}
}

// Launch starts parley and returns once it serves, as its ready file says.
// If parley exits first, or does not serve within the timeout, Launch
// stops it and returns an error that ends with the log's last lines. On
// Linux the kernel kills parley (and so the daprd it launched) if the
// caller dies first.
func Launch(ctx context.Context, o LaunchOptions) (*Process, error) {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 90 * time.Second
	}
	readyDir, err := os.MkdirTemp("", "parley-ready-")
	if err != nil {
		return nil, fmt.Errorf("launch parley: %w", err)
	}
	defer os.RemoveAll(readyDir)
	ready := filepath.Join(readyDir, "ready")
	logf, err := os.OpenFile(o.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("launch parley: %w", err)
	}
	// No metrics listener unless Args ask for one (a later flag wins):
	// many parleys run side by side in tests and would share its port.
	cmd := exec.Command(o.Binary, append([]string{"-ready-file", ready, "-metrics-addr", ""}, o.Args...)...)
	cmd.Dir, cmd.Env = o.Dir, o.Env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("launch parley: %w", err)
	}
	p := &Process{Cmd: cmd, LogPath: o.LogPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	wctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	err = Until(wctx, func() bool {
		if data, err := os.ReadFile(ready); err == nil && len(data) > 0 {
			p.Base = "http://" + strings.TrimSpace(string(data))
			return true
		}
		select {
		case <-p.exited:
			cancel() // ends the wait: parley will not serve
		default:
		}
		return false
	})
	if err == nil {
		return p, nil
	}
	select {
	case <-p.exited:
		return nil, fmt.Errorf("parley exited before serving (%s); its log ends:\n%s", cmd.ProcessState, Tail(o.LogPath, 40))
	default:
	}
	p.Kill()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, fmt.Errorf("parley not serving after %s; its log ends:\n%s", o.ReadyTimeout, Tail(o.LogPath, 40))
	}
	return nil, fmt.Errorf("launch parley: %w", err)
}

// Exited is closed once the process has exited and its log is closed.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop asks parley to shut down with SIGTERM (it stops its daprd), and
// kills it if it has not exited within grace. It reports whether parley
// stopped by itself.
func (p *Process) Stop(grace time.Duration) bool {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		p.Kill()
		return false
	}
}

// Kill ends parley with SIGKILL, as a crash would, and waits for it; on
// Linux the kernel then kills the daprd it launched.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}
