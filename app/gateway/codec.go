package gateway

import (
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	jsoniter "github.com/json-iterator/go"
	"google.golang.org/protobuf/proto"

	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/domain"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

var json = jsoniter.ConfigFastest

// Subprotocols the gateway speaks. JSON is the default when a client names none.
const (
	SubprotocolJSON  = "parley.v1.json"
	SubprotocolProto = "parley.v1.proto"
)

// codec turns frames into WebSocket payloads and back.
type codec interface {
	encode(f *pb.Frame) ([]byte, error)
	// appendEncode appends f's encoding to buf.
	appendEncode(buf []byte, f *pb.Frame) ([]byte, error)
	decode(data []byte, f *pb.Frame) error
	binary() bool
}

type jsonCodec struct{}

func (c jsonCodec) encode(f *pb.Frame) ([]byte, error) {
	size := 192 + len(f.Body)
	if f.Msg != nil {
		size += len(f.Msg.Body)
	}
	return c.appendEncode(make([]byte, 0, size), f)
}
func (jsonCodec) appendEncode(buf []byte, f *pb.Frame) ([]byte, error) {
	if b, ok := f.AppendJSON(buf); ok {
		return b, nil
	}
	data, err := json.Marshal(f)
	return append(buf, data...), err
}

// errFrameNotUTF8 answers a text frame that is not UTF-8: RFC 6455 allows
// none, and its strings could not be sent back as they came.
var errFrameNotUTF8 = errors.New("text frame is not valid UTF-8; JSON frames must be UTF-8 (RFC 6455 section 5.6)")

func (jsonCodec) decode(data []byte, f *pb.Frame) error {
	if !utf8.Valid(data) {
		return errFrameNotUTF8
	}
	if err := json.Unmarshal(data, f); err != nil {
		return fmt.Errorf("frame is not a JSON object of the documented shape: %s", trimErr(err))
	}
	return nil
}
func (jsonCodec) binary() bool { return false }

type protoCodec struct{}

func (protoCodec) encode(f *pb.Frame) ([]byte, error) { return proto.Marshal(f) }
func (protoCodec) appendEncode(buf []byte, f *pb.Frame) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend(buf, f)
}
func (protoCodec) decode(data []byte, f *pb.Frame) error {
	if err := proto.Unmarshal(data, f); err != nil {
		return fmt.Errorf("frame is not a parley.v1.Frame protobuf: %v", err)
	}
	return nil
}
func (protoCodec) binary() bool { return true }

// trimErr keeps jsoniter's messages short: they quote the input, which may
// be large and must not be echoed whole.
func trimErr(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func toPB(m *domain.Message) *pb.Message {
	var pm pb.Message
	setPB(&pm, m)
	return &pm
}

func setPB(pm *pb.Message, m *domain.Message) {
	pm.Id, pm.Conv, pm.Seq, pm.From = m.ID, string(m.Conv), m.Seq, string(m.Sender)
	pm.Cmid, pm.Ctype, pm.Body, pm.Ts = m.ClientMsgID, string(m.ContentType), m.Body, m.ServerMs
	pm.ReplyTo, pm.MentionAll, pm.Edited, pm.Recalled = m.ReplyTo, m.MentionAll, m.Edited, m.Recalled
	if len(m.Mentions) > 0 {
		pm.Mentions = make([]string, len(m.Mentions))
		for i, u := range m.Mentions {
			pm.Mentions[i] = string(u)
		}
	}
}

func toPBList(ms []domain.Message) []*pb.Message {
	out := make([]*pb.Message, len(ms))
	for i := range ms {
		out[i] = toPB(&ms[i])
	}
	return out
}

// encodeMsg encodes the msg frame of a push.
func (c *conn) encodeMsg(env *delivery.Envelope) ([]byte, error) {
	f := getMsgFrame()
	setPB(f.Msg, env.Msg)
	f.Type, f.NoAck = "msg", env.NoAck
	data, err := c.codec.encode(f)
	putMsgFrame(f)
	return data, err
}

// framePool holds the frames of the hot paths: a frame is decoded, or
// built and encoded, and dropped at once, and allocating each cost the
// garbage collector more than the encoding.
var framePool = sync.Pool{New: func() any { return new(pb.Frame) }}

func getFrame() *pb.Frame { return framePool.Get().(*pb.Frame) }

func putFrame(f *pb.Frame) {
	f.Reset()
	framePool.Put(f)
}

// msgFramePool holds frames that carry a message, with their message.
var msgFramePool = sync.Pool{New: func() any { return &pb.Frame{Msg: new(pb.Message)} }}

func getMsgFrame() *pb.Frame { return msgFramePool.Get().(*pb.Frame) }

func putMsgFrame(f *pb.Frame) {
	m := f.Msg
	f.Reset()
	m.Reset()
	f.Msg = m
	msgFramePool.Put(f)
}

// encodeBuffers holds the buffers frames are encoded into before they are
// queued: the queue copies them.
var encodeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledEncodeBuffer keeps a large frame's buffer out of the pool.
const maxPooledEncodeBuffer = 16 << 10
