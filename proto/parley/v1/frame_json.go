package parleyv1

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// AppendJSON appends f as the JSON text frame of the protocol: the field
// names of the json tags, empty fields left out. It is written by hand
// because it runs for every frame a server sends and a client writes; a
// reflection-based encoder cost several times more. A frame with
// conversations (a listing, not on the hot path) returns ok false: the
// caller encodes it another way; so does one with a group profile or join
// requests.
func (f *Frame) AppendJSON(b []byte) (out []byte, ok bool) {
	if len(f.Conversations) > 0 || f.Group != nil || len(f.Requests) > 0 {
		return b, false
	}
	b = append(b, '{')
	n := len(b)
	b = appendStr(b, n, "type", f.Type)
	b = appendStr(b, n, "id", f.Id)
	b = appendStr(b, n, "conv", f.Conv)
	b = appendStr(b, n, "to", f.To)
	b = appendStr(b, n, "cmid", f.Cmid)
	b = appendStr(b, n, "ctype", f.Ctype)
	b = appendStr(b, n, "body", f.Body)
	b = appendUint(b, n, "seq", f.Seq)
	b = appendUint(b, n, "limit", uint64(f.Limit))
	if f.Msg != nil {
		b = appendKey(b, n, "msg")
		b = f.Msg.appendJSON(b)
	}
	if len(f.Messages) > 0 {
		b = appendKey(b, n, "messages")
		b = append(b, '[')
		for i, m := range f.Messages {
			if i > 0 {
				b = append(b, ',')
			}
			if m == nil {
				b = append(b, "null"...)
				continue
			}
			b = m.appendJSON(b)
		}
		b = append(b, ']')
	}
	b = appendBool(b, n, "more", f.More)
	b = appendStr(b, n, "code", f.Code)
	b = appendStr(b, n, "message", f.Message)
	b = appendBool(b, n, "retryable", f.Retryable)
	b = appendStr(b, n, "user", f.User)
	b = appendStr(b, n, "conn", f.Conn)
	b = appendStr(b, n, "node", f.Node)
	b = appendUint(b, n, "reply_to", f.ReplyTo)
	b = appendStrs(b, n, "mentions", f.Mentions)
	b = appendStr(b, n, "op", f.Op)
	b = appendStrs(b, n, "users", f.Users)
	b = appendStr(b, n, "role", f.Role)
	b = appendStr(b, n, "name", f.Name)
	b = appendStr(b, n, "notice", f.Notice)
	b = appendStr(b, n, "ext", f.Ext)
	b = appendStr(b, n, "policy", f.Policy)
	b = appendBool(b, n, "on", f.On)
	if f.Until != 0 {
		b = appendKey(b, n, "until")
		b = strconv.AppendInt(b, f.Until, 10)
	}
	b = appendStr(b, n, "note", f.Note)
	b = appendUint(b, n, "count", f.Count)
	b = appendStr(b, n, "unit", f.Unit)
	b = appendUint(b, n, "epoch", f.Epoch)
	b = appendBool(b, n, "pending", f.Pending)
	b = appendBool(b, n, "no_ack", f.NoAck)
	return append(b, '}'), true
}

func (m *Message) appendJSON(b []byte) []byte {
	b = append(b, '{')
	n := len(b)
	b = appendStr(b, n, "id", m.Id)
	b = appendStr(b, n, "conv", m.Conv)
	b = appendUint(b, n, "seq", m.Seq)
	b = appendStr(b, n, "from", m.From)
	b = appendStr(b, n, "cmid", m.Cmid)
	b = appendStr(b, n, "ctype", m.Ctype)
	b = appendStr(b, n, "body", m.Body)
	if m.Ts != 0 {
		b = appendKey(b, n, "ts")
		b = strconv.AppendInt(b, m.Ts, 10)
	}
	b = appendUint(b, n, "reply_to", m.ReplyTo)
	b = appendStrs(b, n, "mentions", m.Mentions)
	b = appendBool(b, n, "mention_all", m.MentionAll)
	b = appendBool(b, n, "edited", m.Edited)
	b = appendBool(b, n, "recalled", m.Recalled)
	return append(b, '}')
}

func appendStrs(b []byte, start int, key string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	b = append(appendKey(b, start, key), '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

// appendKey appends `"key":`, after a comma unless the object that starts
// at start is still empty.
func appendKey(b []byte, start int, key string) []byte {
	if len(b) > start {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendStr(b []byte, start int, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(appendKey(b, start, key), v)
}

func appendUint(b []byte, start int, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(appendKey(b, start, key), v, 10)
}

func appendBool(b []byte, start int, key string, v bool) []byte {
	if !v {
		return b
	}
	return append(appendKey(b, start, key), "true"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as a JSON string. Invalid UTF-8 becomes
// U+FFFD, so that the frame is always valid text.
func appendJSONString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
