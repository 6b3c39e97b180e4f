//go:build linux

package wsconn

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// Poller watches idle connections with one epoll instance, so that an idle
// connection needs no goroutine of its own. Each socket is registered
// one-shot: when it becomes readable the poller starts a goroutine that
// runs the connection's Handler.Readable, which reads what arrived and then
// calls Rearm. Level-triggered, so data that arrived meanwhile fires again
// at once after the re-arm. The zero value is not usable; use NewPoller.
// Safe for concurrent use.
type Poller struct {
	epfd   int
	wakeR  int // a pipe registered in epfd, to stop the loop at once
	wakeW  int
	mu     sync.Mutex
	conns  map[int32]*Conn
	closed bool
	done   chan struct{}
}

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// NewPoller starts a poller; Stop ends it.
func NewPoller() (*Poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	var pipe [2]int
	if err := syscall.Pipe2(pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(pipe[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, pipe[0], &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(pipe[0])
		_ = syscall.Close(pipe[1])
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	p := &Poller{epfd: epfd, wakeR: pipe[0], wakeW: pipe[1], conns: make(map[int32]*Conn), done: make(chan struct{})}
	go p.loop()
	return p, nil
}

// Watch registers c's socket; c's Handler.Readable runs when it is
// readable. A connection already closed is left out, and no error is
// returned: its close is under way.
func (p *Poller) Watch(c *Conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("server is shutting down")
	}
	// A connection closed before it got here (a failed push while its
	// presence was written) must not be registered: its fd number may
	// belong to a new connection already. Close marks it closed before
	// forget waits for p.mu, so one seen open here keeps its fd until
	// forget has run.
	if c.Closed() {
		return nil
	}
	ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	p.conns[int32(c.fd)] = c
	return nil
}

// Rearm asks for the next readiness of c's socket. It runs under the
// socket's own reference (RawConn.Control), so it fails cleanly on a socket
// closed meanwhile rather than touching a number reused by another.
func (p *Poller) Rearm(c *Conn) error {
	var err error
	cerr := c.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(fd)}
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
	})
	if cerr != nil {
		return fmt.Errorf("socket closed: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("epoll_ctl mod: %w", err)
	}
	return nil
}

// forget removes c before its socket is closed: once closed, its number may
// be given to a new connection.
func (p *Poller) forget(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[int32(c.fd)] == c {
		delete(p.conns, int32(c.fd))
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
}

// watching reports whether c is registered, for tests.
func (p *Poller) watching(c *Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[int32(c.fd)] == c
}

func (p *Poller) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		for i := range n {
			if c := p.conns[events[i].Fd]; c != nil {
				Go(c.h.Readable)
			}
		}
		p.mu.Unlock()
	}
}

// Stop ends the loop and releases the epoll instance. Registered sockets
// are not closed.
func (p *Poller) Stop() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_, _ = syscall.Write(p.wakeW, []byte{1})
	<-p.done
	_ = syscall.Close(p.epfd)
	_ = syscall.Close(p.wakeR)
	_ = syscall.Close(p.wakeW)
}

// pollerWorks: this system has epoll.
const pollerWorks = true

// readRaw reads what the socket holds without waiting: wouldBlock means
// nothing is there now.
func (c *Conn) readRaw(buf []byte) (n int, wouldBlock bool, err error) {
	var rerr error
	cerr := c.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), buf)
			if rerr != syscall.EINTR {
				return true
			}
		}
	})
	if cerr != nil {
		return 0, false, cerr
	}
	if rerr == syscall.EAGAIN {
		return 0, true, nil
	}
	if rerr != nil {
		return 0, false, rerr
	}
	return n, false, nil
}
