//go:build !linux

package wsconn

import "errors"

// Without epoll, each connection gets a goroutine that waits in a blocking
// read (see Conn.Polled): the same handling, with the cost per idle
// connection of a goroutine.
const pollerWorks = false

// Poller does nothing on this system; see the Linux version.
type Poller struct{}

// NewPoller returns a poller that watches nothing.
func NewPoller() (*Poller, error) { return &Poller{}, nil }

// Watch fails: there is no poller on this system.
func (p *Poller) Watch(*Conn) error { return errors.New("no poller on this system") }

// Rearm fails: there is no poller on this system.
func (p *Poller) Rearm(*Conn) error { return errors.New("no poller on this system") }

func (p *Poller) forget(*Conn)        {}
func (p *Poller) watching(*Conn) bool { return false }

// Stop does nothing.
func (p *Poller) Stop() {}

func (c *Conn) readRaw([]byte) (int, bool, error) {
	return 0, false, errors.New("no poller on this system")
}
