//go:build !linux

package gateway

import "errors"

// Without epoll, each connection gets a goroutine that waits in a blocking
// read (see conn.start): the same handling, with the cost per idle
// connection of a goroutine.
const pollerWorks = false

type poller struct{}

func newPoller() (*poller, error) { return &poller{}, nil }

func (p *poller) watch(*conn) error { return errors.New("no poller on this system") }
func (p *poller) rearm(*conn) error { return errors.New("no poller on this system") }
func (p *poller) forget(*conn)      {}
func (p *poller) stop()             {}

func (c *conn) readRaw([]byte) (int, bool, error) {
	return 0, false, errors.New("no poller on this system")
}
