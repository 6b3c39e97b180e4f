package daprdtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

const (
	// NATSAddr is the NATS server (with JetStream) of components/jetstream.
	NATSAddr = "127.0.0.1:4222"
	// JetStreamStream is the stream components/jetstream/pubsub.yaml names.
	JetStreamStream = "PARLEY"
)

// jetStreamConfig is the stream components/jetstream/pubsub.yaml documents:
// node topics and single-token topics, kept on disk for an hour.
var jetStreamConfig = map[string]any{
	"name":             JetStreamStream,
	"subjects":         []string{"node.>", "*"},
	"storage":          "file",
	"retention":        "limits",
	"discard":          "old",
	"max_age":          int64(time.Hour),
	"num_replicas":     1,
	"duplicate_window": int64(2 * time.Minute),
	"max_msgs":         -1,
	"max_bytes":        -1,
	"max_consumers":    -1,
	"max_msg_size":     -1,
}

// jsError is the error part of a JetStream API answer.
type jsError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

// EnsureJetStream creates the stream of components/jetstream on the NATS
// server at addr, or brings an existing one to that configuration. The
// JetStream API is request and reply over plain NATS, so a few protocol
// lines written by hand do, as clearMQTTSession does for MQTT.
func EnsureJetStream(ctx context.Context, addr string) error {
	cfg, err := json.Marshal(jetStreamConfig)
	if err != nil {
		return fmt.Errorf("jetstream: encode the stream: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("jetstream: connect: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("jetstream: no INFO from %s (%q): %v", addr, line, err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	inbox := "_INBOX.parley-test." + hex.EncodeToString(b[:])
	if _, err := fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"parley daprdtest\"}\r\nSUB %s 1\r\n", inbox); err != nil {
		return fmt.Errorf("jetstream: connect: %w", err)
	}
	request := func(subject string) (*jsError, error) {
		if _, err := fmt.Fprintf(conn, "PUB %s %s %d\r\n%s\r\n", subject, inbox, len(cfg), cfg); err != nil {
			return nil, fmt.Errorf("jetstream: %s: %w", subject, err)
		}
		payload, err := readMsg(conn, r)
		if err != nil {
			return nil, fmt.Errorf("jetstream: %s: %w", subject, err)
		}
		var resp struct {
			Error *jsError `json:"error"`
		}
		if err := json.Unmarshal(payload, &resp); err != nil {
			return nil, fmt.Errorf("jetstream: %s: answer %q: %w", subject, payload, err)
		}
		return resp.Error, nil
	}
	jsErr, err := request("$JS.API.STREAM.CREATE." + JetStreamStream)
	if err != nil || jsErr == nil {
		return err
	}
	// The name is taken by a stream with another configuration: update it.
	jsErr, err = request("$JS.API.STREAM.UPDATE." + JetStreamStream)
	if err != nil {
		return err
	}
	if jsErr != nil {
		return fmt.Errorf("jetstream: update stream %s: %s (code %d, err_code %d)", JetStreamStream, jsErr.Description, jsErr.Code, jsErr.ErrCode)
	}
	return nil
}

// readMsg reads protocol lines until a MSG arrives and returns its payload,
// answering the server's PINGs on the way.
func readMsg(w io.Writer, r *bufio.Reader) ([]byte, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "PING":
			if _, err := io.WriteString(w, "PONG\r\n"); err != nil {
				return nil, err
			}
		case strings.HasPrefix(line, "-ERR"):
			return nil, fmt.Errorf("server: %s", line)
		case strings.HasPrefix(line, "MSG "):
			f := strings.Fields(line) // MSG <subject> <sid> [reply] <size>
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				return nil, fmt.Errorf("bad MSG line %q", line)
			}
			buf := make([]byte, n+2) // the payload, then CRLF
			if _, err := io.ReadFull(r, buf); err != nil {
				return nil, err
			}
			return buf[:n], nil
		}
	}
}
