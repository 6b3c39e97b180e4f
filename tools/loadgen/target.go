package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"
)

// errNotLoopback refuses a target off this machine: the load generator is
// a tool for a server on the same host, never for someone else's.
var errNotLoopback = errors.New("the load generator only targets loopback addresses (127.0.0.0/8, ::1, localhost)")

// loopbackTarget checks that base (http://host:port) names this machine
// and returns its port.
func loopbackTarget(ctx context.Context, base string) (port int, err error) {
	u, err := url.Parse(base)
	if err != nil {
		return 0, fmt.Errorf("-target %q: %w", base, err)
	}
	if u.Scheme != "http" {
		return 0, fmt.Errorf("-target %q: want http://host:port", base)
	}
	if err := checkLoopbackHost(ctx, u.Hostname()); err != nil {
		return 0, fmt.Errorf("-target %q: %w", base, err)
	}
	port, err = strconv.Atoi(u.Port())
	if err != nil {
		return 0, fmt.Errorf("-target %q: want an explicit port", base)
	}
	return port, nil
}

func checkLoopbackHost(ctx context.Context, host string) error {
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%s resolves to nothing", host)
	}
	for _, a := range addrs {
		if a = a.Unmap(); !a.IsLoopback() {
			return fmt.Errorf("%s is %s: %w", host, a, errNotLoopback)
		}
	}
	return nil
}

// sourcePool spreads connections over several local addresses of
// 127.0.0.0/8. One source address and one server port allow about 28,000
// connections (the ephemeral port range); several lift that limit.
type sourcePool struct {
	addrs []netip.Addr
}

// newSourcePool returns n consecutive addresses from first, skipping those
// ending in .0 and .255.
func newSourcePool(first string, n int) (*sourcePool, error) {
	a, err := netip.ParseAddr(first)
	if err != nil || !a.Is4() || !a.IsLoopback() {
		return nil, fmt.Errorf("-source-base %q: want an IPv4 address in 127.0.0.0/8", first)
	}
	p := &sourcePool{}
	for len(p.addrs) < max(n, 1) {
		if !a.IsLoopback() {
			return nil, fmt.Errorf("-sources %d from %s runs out of 127.0.0.0/8", n, first)
		}
		if b := a.As4(); b[3] != 0 && b[3] != 255 {
			p.addrs = append(p.addrs, a)
		}
		a = a.Next()
	}
	return p, nil
}

// dialFunc returns a dialer for connection i that binds its source address
// and, whatever the URL said, dials only loopback addresses.
func (p *sourcePool) dialFunc(i int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	src := p.addrs[i%len(p.addrs)]
	d := &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: src.AsSlice()},
		Timeout:   10 * time.Second,
		Control:   bindAddressNoPort,
	}
	return func(ctx context.Context, _, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			if !ip.IsLoopback() {
				return nil, fmt.Errorf("%s is %s: %w", host, ip, errNotLoopback)
			}
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("%s has no IPv4 loopback address to dial from %s", host, src)
		}
		return d.DialContext(ctx, "tcp4", net.JoinHostPort(ips[0].String(), port))
	}
}
