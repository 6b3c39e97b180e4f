package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/client"
)

// runPrefix returns a short random prefix for user names, so that runs
// against a server that keeps state (redis) never share users.
func runPrefix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [6]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "lg" + string(b[:])
}

// userName is the user a load generator plays: prefix, role, index.
func userName(prefix, role string, i int) string {
	return fmt.Sprintf("%s-%s%d", prefix, role, i)
}

// tuneHTTP lets the token requests reuse their connections: the default
// keeps two idle connections per host, so thousands of requests would
// each open (and leave in TIME_WAIT) a connection.
func tuneHTTP(conc int) {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t.MaxIdleConnsPerHost = max(conc, t.MaxIdleConnsPerHost)
	}
}

// closeIdleHTTP closes the token requests' connections, which would
// otherwise hold descriptors on the server during the run.
func closeIdleHTTP() { http.DefaultClient.CloseIdleConnections() }

// fetchTokens gets a development token for every user (the server must run
// with -dev-tokens), conc at a time.
func fetchTokens(ctx context.Context, base string, users []string, conc int, done func()) ([]string, error) {
	tuneHTTP(conc)
	defer closeIdleHTTP()
	tokens := make([]string, len(users))
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range min(conc, len(users)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(users) || ctx.Err() != nil {
					return
				}
				rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
				tok, err := client.DevToken(rctx, base, users[i])
				rcancel()
				if err != nil {
					once.Do(func() {
						firstErr = fmt.Errorf("dev token for %s: %w", users[i], err)
						var ce *client.Error
						if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
							firstErr = fmt.Errorf("%w (run the server with -dev-tokens)", firstErr)
						}
						cancel()
					})
					return
				}
				tokens[i] = tok
				if done != nil {
					done()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return tokens, ctx.Err()
}

// errCode names an error for the report: the protocol code of a server
// error, else a short class.
func errCode(err error) string {
	var ce *client.Error
	switch {
	case errors.As(err, &ce):
		return ce.Code
	case errors.Is(err, client.ErrClosed):
		return "connection_closed"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	s := err.Error()
	if i := strings.IndexByte(s, ':'); i > 0 && i < 40 {
		return s[:i]
	}
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}

// errCounts counts errors by code. Safe for concurrent use.
type errCounts struct {
	mu sync.Mutex
	m  map[string]int
}

func (e *errCounts) add(err error) {
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]int{}
	}
	e.m[errCode(err)]++
	e.mu.Unlock()
}

func (e *errCounts) snapshot() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}

// dialAll connects every user with its token, conc at a time, connection i
// from source address i. It returns the clients (nil where dialing failed),
// and records each dial's time in h.
func dialAll(ctx context.Context, e *env, base string, tokens []string, firstIndex int, o client.Options, h *Histogram, b *bar) ([]*client.Client, int, error) {
	out := make([]*client.Client, len(tokens))
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(e.concurrency, len(tokens)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(tokens) || ctx.Err() != nil {
					return
				}
				opts := o
				opts.NetDialContext = e.pool.dialFunc(firstIndex + i)
				dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				t0 := time.Now()
				c, err := client.Dial(dctx, base, tokens[i], opts)
				cancel()
				if err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				} else {
					if h != nil {
						h.Record(time.Since(t0))
					}
					out[i] = c
				}
				if b != nil {
					b.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return out, int(failed.Load()), firstErr
}

// closeAll closes every client, conc at a time.
func closeAll(cs []*client.Client, conc int) {
	ch := make(chan *client.Client)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range ch {
				_ = c.Close()
			}
		}()
	}
	for _, c := range cs {
		if c != nil {
			ch <- c
		}
	}
	close(ch)
	wg.Wait()
}
