package testkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// RedisConn is one connection to a Redis server that sends commands in the
// Redis protocol (RESP), just enough for tests and tools to prepare or
// clean a server without a client library. Not safe for concurrent use.
type RedisConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// DialRedis connects to the Redis server at addr. ctx's deadline, if any,
// bounds every command on the connection.
func DialRedis(ctx context.Context, addr string) (*RedisConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	return &RedisConn{conn: conn, r: bufio.NewReader(conn)}, nil
}

// Close closes the connection.
func (c *RedisConn) Close() error { return c.conn.Close() }

// Do sends one command and returns its reply as ReadRESP does; an error
// reply is an error.
func (c *RedisConn) Do(args ...string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("redis: empty command")
	}
	if _, err := c.conn.Write(AppendRESPCommand(nil, args...)); err != nil {
		return nil, fmt.Errorf("redis %s: %w", args[0], err)
	}
	v, err := ReadRESP(c.r)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", args[0], err)
	}
	return v, nil
}

// RedisDo sends one command to the server at addr on a connection of its
// own.
func RedisDo(ctx context.Context, addr string, args ...string) (any, error) {
	c, err := DialRedis(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(args...)
}

// AppendRESPCommand appends args as one RESP command, an array of bulk
// strings.
func AppendRESPCommand(buf []byte, args ...string) []byte {
	buf = append(buf, '*')
	buf = strconv.AppendInt(buf, int64(len(args)), 10)
	buf = append(buf, "\r\n"...)
	for _, a := range args {
		buf = append(buf, '$')
		buf = strconv.AppendInt(buf, int64(len(a)), 10)
		buf = append(buf, "\r\n"...)
		buf = append(buf, a...)
		buf = append(buf, "\r\n"...)
	}
	return buf
}

// ReadRESP reads one reply: a status or bulk string is a string, a null
// bulk string or array is nil, an integer is an int64, an array is []any,
// and an error reply is returned as an error.
func ReadRESP(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, errors.New(line[1:])
	case ':':
		n, err := strconv.ParseInt(line[1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("integer reply %q: %w", line, err)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, fmt.Errorf("bulk reply %q: %w", line, err)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, fmt.Errorf("array reply %q: %w", line, err)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, 0, n)
		for range n {
			v, err := ReadRESP(r)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown reply %q", line)
}
