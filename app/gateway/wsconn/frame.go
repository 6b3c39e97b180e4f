package wsconn

import (
	"encoding/binary"
	"errors"

	"github.com/gorilla/websocket"
)

// Opcodes (RFC 6455 section 5.2).
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// MaxControlPayload is the largest payload of a control frame (section 5.5).
const MaxControlPayload = 125

// MaxFrameHeader is the longest client frame header: 2 bytes, an 8-byte
// length and a 4-byte mask.
const MaxFrameHeader = 14

// Frame is one frame read from a client. Payload is unmasked and aliases
// the buffer it was parsed from: it is valid until that buffer is reused.
type Frame struct {
	Fin     bool
	Opcode  byte
	Payload []byte
}

// CloseError is a reason to end a connection with a close frame: a
// violation of the protocol by the client (Code 1002, 1009...), or the
// peer's own close frame echoed back.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string { return e.Reason }

// ErrNeedMore means the buffer holds only the start of a frame.
var ErrNeedMore = errors.New("incomplete frame")

// ParseFrame reads the frame at the start of b, unmasking its payload in
// place. It returns the frame and how many bytes it took. When b holds only
// part of a frame it returns ErrNeedMore and need, the whole frame's size if
// the header is complete (0 otherwise), so that the caller can make room.
// A frame whose payload is over limit is a *CloseError with code 1009;
// anything else a client must not send is a *CloseError with code 1002.
func ParseFrame(b []byte, limit int) (f Frame, n int, need int, err error) {
	if len(b) < 2 {
		return f, 0, 0, ErrNeedMore
	}
	b0, b1 := b[0], b[1]
	if b0&0x70 != 0 {
		return f, 0, 0, &CloseError{websocket.CloseProtocolError, "reserved bits set: no extension was negotiated"}
	}
	f.Fin = b0&0x80 != 0
	f.Opcode = b0 & 0x0F
	switch f.Opcode {
	case OpContinuation, OpText, OpBinary:
	case OpClose, OpPing, OpPong:
		if !f.Fin {
			return f, 0, 0, &CloseError{websocket.CloseProtocolError, "fragmented control frame"}
		}
	default:
		return f, 0, 0, &CloseError{websocket.CloseProtocolError, "unknown opcode"}
	}
	if b1&0x80 == 0 {
		return f, 0, 0, &CloseError{websocket.CloseProtocolError, "client frames must be masked"}
	}
	hdr := 2
	var size uint64
	switch l := b1 & 0x7F; l {
	case 126:
		hdr += 2
		if len(b) < hdr {
			return f, 0, 0, ErrNeedMore
		}
		size = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		hdr += 8
		if len(b) < hdr {
			return f, 0, 0, ErrNeedMore
		}
		size = binary.BigEndian.Uint64(b[2:10])
		if size>>63 != 0 {
			return f, 0, 0, &CloseError{websocket.CloseProtocolError, "frame length has its top bit set"}
		}
	default:
		size = uint64(l)
	}
	if f.Opcode >= OpClose && size > MaxControlPayload {
		return f, 0, 0, &CloseError{websocket.CloseProtocolError, "control frame over 125 bytes"}
	}
	if size > uint64(limit) {
		return f, 0, 0, &CloseError{websocket.CloseMessageTooBig, "frame over the size limit"}
	}
	hdr += 4 // masking key
	total := hdr + int(size)
	if len(b) < total {
		if len(b) < hdr {
			return f, 0, 0, ErrNeedMore
		}
		return f, 0, total, ErrNeedMore
	}
	key := b[hdr-4 : hdr]
	f.Payload = b[hdr:total]
	unmask(key, f.Payload)
	return f, total, total, nil
}

// unmask XORs p with the 4-byte key, eight bytes at a time where it can.
func unmask(key []byte, p []byte) {
	k := binary.LittleEndian.Uint32(key)
	k8 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= key[i&3]
	}
}

// AppendFrame appends one final, unmasked server-to-client WebSocket frame
// (RFC 6455 section 5.2).
func AppendFrame(buf []byte, opcode byte, payload []byte) []byte {
	buf = append(buf, 0x80|opcode)
	switch n := len(payload); {
	case n < 126:
		buf = append(buf, byte(n))
	case n <= 0xFFFF:
		buf = append(buf, 126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(buf, payload...)
}

// validReceivedCloseCode reports whether a peer may send code in a close
// frame (RFC 6455 section 7.4).
func validReceivedCloseCode(code int) bool {
	switch code {
	case 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014:
		return true
	}
	return code >= 3000 && code <= 4999
}
