package gateway

import (
	"encoding/binary"
	"errors"

	"github.com/gorilla/websocket"
)

// The gateway reads client frames itself (RFC 6455 section 5) instead of
// through the WebSocket library: a library reader owns a buffer and a
// blocked goroutine per connection for as long as the connection lives,
// which is most of what an idle connection costs. Reading only when the
// socket is readable, into a shared buffer, an idle connection holds
// neither. The library still does the opening handshake and writes control
// frames.

// Opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxControlPayload is the largest payload of a control frame (section 5.5).
const maxControlPayload = 125

// wsFrame is one frame read from a client. Payload is unmasked and aliases
// the buffer it was parsed from: it is valid until that buffer is reused.
type wsFrame struct {
	fin     bool
	opcode  byte
	payload []byte
}

// frameError is a violation of the protocol by the client: the connection
// is closed with code and reason.
type frameError struct {
	code   int
	reason string
}

func (e *frameError) Error() string { return e.reason }

var errNeedMore = errors.New("incomplete frame")

// parseFrame reads the frame at the start of b, unmasking its payload in
// place. It returns the frame and how many bytes it took. When b holds only
// part of a frame it returns errNeedMore and need, the whole frame's size if
// the header is complete (0 otherwise), so that the caller can make room.
// A frame whose payload is over limit is a *frameError with code 1009;
// anything else a client must not send is a *frameError with code 1002.
func parseFrame(b []byte, limit int) (f wsFrame, n int, need int, err error) {
	if len(b) < 2 {
		return f, 0, 0, errNeedMore
	}
	b0, b1 := b[0], b[1]
	if b0&0x70 != 0 {
		return f, 0, 0, &frameError{websocket.CloseProtocolError, "reserved bits set: no extension was negotiated"}
	}
	f.fin = b0&0x80 != 0
	f.opcode = b0 & 0x0F
	switch f.opcode {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !f.fin {
			return f, 0, 0, &frameError{websocket.CloseProtocolError, "fragmented control frame"}
		}
	default:
		return f, 0, 0, &frameError{websocket.CloseProtocolError, "unknown opcode"}
	}
	if b1&0x80 == 0 {
		return f, 0, 0, &frameError{websocket.CloseProtocolError, "client frames must be masked"}
	}
	hdr := 2
	var size uint64
	switch l := b1 & 0x7F; l {
	case 126:
		hdr += 2
		if len(b) < hdr {
			return f, 0, 0, errNeedMore
		}
		size = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		hdr += 8
		if len(b) < hdr {
			return f, 0, 0, errNeedMore
		}
		size = binary.BigEndian.Uint64(b[2:10])
		if size>>63 != 0 {
			return f, 0, 0, &frameError{websocket.CloseProtocolError, "frame length has its top bit set"}
		}
	default:
		size = uint64(l)
	}
	if f.opcode >= opClose && size > maxControlPayload {
		return f, 0, 0, &frameError{websocket.CloseProtocolError, "control frame over 125 bytes"}
	}
	if size > uint64(limit) {
		return f, 0, 0, &frameError{websocket.CloseMessageTooBig, "frame over the size limit"}
	}
	hdr += 4 // masking key
	total := hdr + int(size)
	if len(b) < total {
		if len(b) < hdr {
			return f, 0, 0, errNeedMore
		}
		return f, 0, total, errNeedMore
	}
	key := b[hdr-4 : hdr]
	f.payload = b[hdr:total]
	unmask(key, f.payload)
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
