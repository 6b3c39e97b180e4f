package gateway

import (
	"testing"

	pb "github.com/parley-im/parley/proto/parley/v1"
)

// FuzzDecodeFrame: any bytes either decode into a frame that re-encodes and
// decodes to the same type, or give an error; never a panic. Both codecs.
func FuzzDecodeFrame(f *testing.F) {
	seeds := []string{
		`{"type":"send","id":"1","to":"bob","cmid":"c1","body":"hi"}`,
		`{"type":"sync","conv":"d:a~b","seq":3,"limit":50}`,
		`{"type":"recv","conv":"d:a~b","seq":18446744073709551615}`,
		`{"type":5}`, `{{{`, `[]`, `null`, `{"msg":{"seq":-1}}`, "\x0a\x04send\x12\x011",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []codec{jsonCodec{}, protoCodec{}} {
			var fr pb.Frame
			if err := c.decode(data, &fr); err != nil {
				continue
			}
			out, err := c.encode(&fr)
			if err != nil {
				t.Fatalf("%T: decoded frame does not encode: %v", c, err)
			}
			var again pb.Frame
			if err := c.decode(out, &again); err != nil || again.Type != fr.Type || again.Seq != fr.Seq || again.Body != fr.Body {
				t.Fatalf("%T: round trip changed the frame: %v", c, err)
			}
		}
	})
}
