package gateway

import (
	"strings"
	"testing"
	"time"
)

// TestLargeFrameCutEverywhereIsReadWhole: a frame larger than the read
// buffer, cut at every kind of place and sent between two small frames,
// is read whole and the three are answered in order.
func TestLargeFrameCutEverywhereIsReadWhole(t *testing.T) {
	for _, size := range []int{20000, 40000, 65000} {
		c, _ := dialRaw(t)
		pad := strings.Repeat("x", size)
		big := clientFrame(true, opText, []byte(`{"type":"ping","id":"big","body":"`+pad+`"}`), testKey)
		small := clientFrame(true, opText, []byte(`{"type":"ping","id":"s1"}`), testKey)
		tail := clientFrame(true, opText, []byte(`{"type":"ping","id":"s2"}`), testKey)
		c.write(append(append([]byte{}, small...), big[:1]...))
		time.Sleep(10 * time.Millisecond)
		c.write(big[1:9])
		time.Sleep(10 * time.Millisecond)
		rest := big[9:]
		for len(rest) > 7000 {
			c.write(rest[:7000])
			rest = rest[7000:]
			time.Sleep(5 * time.Millisecond)
		}
		c.write(append(append([]byte{}, rest...), tail...))
		for _, id := range []string{"s1", "big", "s2"} {
			if got := c.next(); !strings.Contains(got, `"id":"`+id+`"`) {
				t.Fatalf("size %d: want %s got %.80s", size, id, got)
			}
		}
	}
}

// TestFrameHeaderDoesNotPinItsWholeSize: the header of a 60 KB frame, with
// no payload yet, makes the connection hold a buffer of what arrived plus a
// read's worth, not the 60 KB it announces.
func TestFrameHeaderDoesNotPinItsWholeSize(t *testing.T) {
	c, srv := dialRaw(t)
	big := clientFrame(true, opText, make([]byte, 60000), testKey)
	c.write(big[:maxFrameHeader])
	var held int
	for range 100 {
		time.Sleep(10 * time.Millisecond)
		for _, sess := range srv.hub.All() {
			cn := sess.(*conn)
			cn.mu.Lock()
			reading := cn.reading
			cn.mu.Unlock()
			if !reading && cn.partial != nil {
				held = cap(cn.partial)
			}
		}
		if held > 0 {
			break
		}
	}
	if held == 0 {
		t.Fatal("the header was not kept as the start of a frame")
	}
	if held > readBufferSize+maxFrameHeader {
		t.Fatalf("a 14-byte header made the connection hold %d bytes", held)
	}
}

// TestTextFrameNotUTF8: a JSON text frame that is not UTF-8 gets an error
// frame with code invalid_utf8, nothing else happens, and the connection
// goes on.
func TestTextFrameNotUTF8(t *testing.T) {
	c, _ := dialRaw(t)
	c.write(clientFrame(true, opText, []byte("{\"type\":\"ping\",\"id\":\"\xff\"}"), testKey))
	if got := c.next(); !strings.Contains(got, `"code":"invalid_utf8"`) {
		t.Fatalf("want an invalid_utf8 error frame, got %.120s", got)
	}
	c.write(clientFrame(true, opText, []byte(`{"type":"ping","id":"after"}`), testKey))
	if got := c.next(); !strings.Contains(got, `"type":"pong"`) || !strings.Contains(got, `"id":"after"`) {
		t.Fatalf("want the pong after the bad frame, got %.120s", got)
	}
}
