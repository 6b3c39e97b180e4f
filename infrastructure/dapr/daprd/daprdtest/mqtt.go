package daprdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
)

// MQTTAddr is the broker of components/mysql-mqtt.
const MQTTAddr = "127.0.0.1:1883"

// clearMQTTSession ends the broker's persistent session for clientID. The
// mqtt3 component connects with cleanSession false, so the broker would
// otherwise keep every test daprd's session, and its queued messages,
// forever. Connecting once with the clean-session flag set discards it
// (MQTT 3.1.1, section 3.1.2.4). The packets are written by hand: two small
// frames do not justify a client library.
func clearMQTTSession(ctx context.Context, addr, clientID string) error {
	if len(clientID) > 0xffff {
		return errors.New("client id too long")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("mqtt connect: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}

	varHeader := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 10} // MQTT 3.1.1, clean session, 10 s keep-alive
	payload := append([]byte{byte(len(clientID) >> 8), byte(len(clientID))}, clientID...)
	remaining := len(varHeader) + len(payload)
	packet := []byte{0x10}
	for { // the remaining length is a base-128 varint
		b := byte(remaining % 128)
		remaining /= 128
		if remaining > 0 {
			b |= 0x80
		}
		packet = append(packet, b)
		if remaining == 0 {
			break
		}
	}
	packet = append(append(packet, varHeader...), payload...)
	if _, err := conn.Write(packet); err != nil {
		return fmt.Errorf("mqtt connect: %w", err)
	}
	var connack [4]byte
	if _, err := io.ReadFull(conn, connack[:]); err != nil {
		return fmt.Errorf("mqtt connack: %w", err)
	}
	if connack[0] != 0x20 || connack[3] != 0 {
		return fmt.Errorf("mqtt connack refused: % x", connack)
	}
	_, err = conn.Write([]byte{0xe0, 0}) // DISCONNECT
	return err
}
