package wsconn

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// echo is a Handler that queues every message back to the client, as the
// gateway queues replies, and reports each read it finished.
type echo struct {
	// readMu orders one readiness's reads before the next's, as the
	// gateway's reading flag does: epoll is no edge the race detector sees.
	readMu sync.Mutex
	c      Conn
	poller *Poller
	// reads gets, after each ReadAvailable that left the connection open,
	// how much the connection holds of a frame not whole yet.
	reads chan int
	ended chan error
}

func (e *echo) Readable() {
	e.readMu.Lock()
	defer e.readMu.Unlock()
	err := e.c.ReadAvailable()
	if err != nil {
		var ce *CloseError
		if errors.As(err, &ce) {
			e.c.Close(ce.Code, ce.Reason)
		} else {
			e.c.Close(0, "")
		}
		e.ended <- err
		return
	}
	select {
	case e.reads <- e.c.partialCap():
	default:
	}
	if err := e.poller.Rearm(&e.c); err != nil {
		e.c.Close(0, "")
	}
}

func (e *echo) Message(_ bool, p []byte) bool {
	return e.c.Queue(p, true) == nil
}

func (e *echo) WriteFailed(error) { e.c.Close(0, "") }

// testClient is the client end of a connection whose server end is an echo.
type testClient struct {
	t      *testing.T
	ws     *websocket.Conn
	server *echo
}

var testCfg = Config{MaxMessageBytes: 64 << 10, MaxQueueBytes: 1 << 20, MaxQueueFrames: 1024, WriteTimeout: 5 * time.Second}

// dial starts a server whose connections are echoes watched by one poller,
// and connects to it.
func dial(t *testing.T, cfg *Config) *testClient {
	t.Helper()
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	servers := make(chan *echo, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{ReadBufferSize: MaxControlPayload}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		e := &echo{poller: p, reads: make(chan int, 64), ended: make(chan error, 1)}
		e.c.Init(ws, cfg, e, p, false)
		if err := p.Watch(&e.c); err != nil {
			t.Error(err)
		}
		servers <- e
	}))
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tc := &testClient{t: t, ws: ws, server: <-servers}
	t.Cleanup(func() {
		_ = ws.Close()
		tc.server.c.Close(0, "")
		<-tc.server.c.Done()
		hs.Close()
		p.Stop()
	})
	return tc
}

func (c *testClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.ws.NetConn().Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// writeRead writes b and waits until the server has read it: the next
// write comes in a read of its own.
func (c *testClient) writeRead(b []byte) int {
	c.t.Helper()
	c.write(b)
	select {
	case held := <-c.server.reads:
		return held
	case <-time.After(5 * time.Second):
		c.t.Fatal("the server did not read what was written")
		return 0
	}
}

func (c *testClient) next() string {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return string(data)
}

var testKey = [4]byte{0xa1, 0xb2, 0xc3, 0xd4}

// TestReadAvailablePutsFramesTogether: a frame cut across reads, a message
// in fragments with a ping between them, and many frames in one segment
// are all read whole and handled in order.
func TestReadAvailablePutsFramesTogether(t *testing.T) {
	t.Parallel()
	c := dial(t, &testCfg)

	wire := clientFrame(true, OpText, []byte(`cut`), testKey)
	for _, part := range [][]byte{wire[:1], wire[1:5], wire[5:]} {
		c.writeRead(part)
	}
	if got := c.next(); got != "cut" {
		t.Fatalf("after a cut frame got %q", got)
	}

	pongs := make(chan string, 1)
	c.ws.SetPongHandler(func(s string) error { pongs <- s; return nil })
	msg := []byte(`a message in three fragments`)
	var b []byte
	b = append(b, clientFrame(false, OpText, msg[:10], testKey)...)
	b = append(b, clientFrame(true, OpPing, []byte("are you there"), testKey)...)
	b = append(b, clientFrame(false, OpContinuation, msg[10:20], testKey)...)
	b = append(b, clientFrame(true, OpContinuation, msg[20:], testKey)...)
	c.write(b)
	if got := c.next(); got != string(msg) {
		t.Fatalf("after fragments got %q", got)
	}
	select {
	case p := <-pongs:
		if p != "are you there" {
			t.Errorf("pong carried %q, want the ping's payload", p)
		}
	case <-time.After(5 * time.Second):
		t.Error("no pong for a ping between fragments")
	}

	b = b[:0]
	for i := range 200 {
		b = append(b, clientFrame(true, OpText, []byte("n"+strconv.Itoa(i)), testKey)...)
	}
	c.write(b)
	for i := range 200 {
		if got := c.next(); got != "n"+strconv.Itoa(i) {
			t.Fatalf("reply %d is %q", i, got)
		}
	}
}

// TestReadAvailableClosesOnProtocolErrors: a frame a client must not send
// ends the connection with the RFC's close code; a close frame is echoed.
func TestReadAvailableClosesOnProtocolErrors(t *testing.T) {
	t.Parallel()
	unmasked := clientFrame(true, OpText, []byte("{}"), testKey)
	unmasked[1] &^= 0x80
	for _, tc := range []struct {
		name string
		wire []byte
		code int
	}{
		{"unmasked_frame", unmasked, websocket.CloseProtocolError},
		{"frame_over_64_kib", clientFrame(true, OpText, make([]byte, 70000), testKey), websocket.CloseMessageTooBig},
		{"stray_continuation", clientFrame(true, OpContinuation, []byte("x"), testKey), websocket.CloseProtocolError},
		{"fragments_over_64_kib", append(clientFrame(false, OpText, make([]byte, 40000), testKey),
			clientFrame(true, OpContinuation, make([]byte, 40000), testKey)...), websocket.CloseMessageTooBig},
		{"close_frame_is_echoed", clientFrame(true, OpClose, []byte{0x0f, 0xa0}, testKey), 4000},
		{"close_code_1006", clientFrame(true, OpClose, []byte{0x03, 0xee}, testKey), websocket.CloseProtocolError},
		{"one_byte_close", clientFrame(true, OpClose, []byte{0x03}, testKey), websocket.CloseProtocolError},
		{"close_reason_not_utf8", clientFrame(true, OpClose, []byte{0x03, 0xe8, 0xff}, testKey), websocket.CloseProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, &testCfg)
			c.write(tc.wire)
			_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err := c.ws.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("read ended with %v, want close code %d", err, tc.code)
			}
		})
	}
}

// TestReadAvailableReadsALargeFrameCutEverywhere: a frame larger than the
// read buffer, cut at every kind of place and sent between two small
// frames, is read whole and the three are handled in order.
func TestReadAvailableReadsALargeFrameCutEverywhere(t *testing.T) {
	t.Parallel()
	for _, size := range []int{20000, 40000, 65000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			t.Parallel()
			c := dial(t, &testCfg)
			c.ws.SetReadLimit(1 << 20)
			big := clientFrame(true, OpText, []byte("big"+strings.Repeat("x", size)), testKey)
			small := clientFrame(true, OpText, []byte("s1"), testKey)
			tail := clientFrame(true, OpText, []byte("s2"), testKey)
			c.writeRead(append(append([]byte{}, small...), big[:1]...))
			c.writeRead(big[1:9])
			rest := big[9:]
			for len(rest) > 7000 {
				c.writeRead(rest[:7000])
				rest = rest[7000:]
			}
			c.write(append(append([]byte{}, rest...), tail...))
			for _, want := range []string{"s1", "big", "s2"} {
				if got := c.next(); !strings.HasPrefix(got, want) {
					t.Fatalf("want %s got %.20s", want, got)
				}
			}
		})
	}
}

// TestReadAvailableDoesNotPinAFrameSize: the header of a 60 KB frame, with
// no payload yet, makes the connection hold a buffer of what arrived plus a
// read's worth, not the 60 KB it announces.
func TestReadAvailableDoesNotPinAFrameSize(t *testing.T) {
	t.Parallel()
	c := dial(t, &testCfg)
	big := clientFrame(true, OpText, make([]byte, 60000), testKey)
	held := c.writeRead(big[:MaxFrameHeader])
	if held == 0 {
		t.Fatal("the header was not kept as the start of a frame")
	}
	if held > ReadBufferSize+MaxFrameHeader {
		t.Fatalf("a 14-byte header made the connection hold %d bytes", held)
	}
}

// TestCloseDoesNotWaitOnAStalledClient: cutting a client that stopped
// reading, with its socket full, returns at once; the close frame is the
// connection's own goroutine's business, bounded by closeFrameTimeout.
func TestCloseDoesNotWaitOnAStalledClient(t *testing.T) {
	t.Parallel()
	cfg := testCfg
	cfg.MaxQueueFrames = 1 << 20
	cfg.MaxQueueBytes = 64 << 20
	c := dial(t, &cfg)
	if tcp, ok := c.ws.NetConn().(*net.TCPConn); ok {
		_ = tcp.SetReadBuffer(1024)
	}
	payload := make([]byte, 32<<10)
	// Queue until the writer is stuck on the full socket: a Flush that
	// times out means it is.
	for i := 0; ; i++ {
		if err := c.server.c.Queue(payload, true); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.server.c.Flush(50 * time.Millisecond)
		if time.Since(start) >= 50*time.Millisecond {
			break
		}
		if i > 2000 {
			t.Fatal("the client's socket never filled")
		}
	}
	start := time.Now()
	c.server.c.Close(4008, "slow")
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("Close took %v on a stalled client", took)
	}
	select {
	case <-c.server.c.Done():
	case <-time.After(closeFrameTimeout + 5*time.Second):
		t.Fatal("the socket was not closed")
	}
}

// TestQueueRefusesPastItsBound: a full queue is refused, never waited on,
// and a closed connection queues nothing.
func TestQueueRefusesPastItsBound(t *testing.T) {
	t.Parallel()
	cfg := testCfg
	cfg.MaxQueueFrames = 2
	var c Conn
	c.cfg = &cfg
	c.closed = false
	c.writing = true // no writer: the queue only fills
	for i, want := range []error{nil, nil, ErrQueueFull} {
		if err := c.Queue([]byte("x"), true); !errors.Is(err, want) {
			t.Fatalf("queue %d: %v, want %v", i, err, want)
		}
	}
	c.mu.Lock()
	c.closed = true
	c.dropQueueLocked()
	c.mu.Unlock()
	if err := c.Queue([]byte("x"), true); !errors.Is(err, ErrClosed) {
		t.Fatalf("queue after close: %v", err)
	}
}

// TestGoKeepsAndEndsWorkers: work given to Go runs, a finished goroutine
// takes the next work, and no more than maxIdleWorkers wait.
func TestGoKeepsAndEndsWorkers(t *testing.T) {
	var wg sync.WaitGroup
	ran := make(chan int, 2*maxIdleWorkers)
	for i := range 2 * maxIdleWorkers {
		wg.Add(1)
		Go(func() { defer wg.Done(); ran <- i })
	}
	wg.Wait()
	if len(ran) != 2*maxIdleWorkers {
		t.Fatalf("%d of %d works ran", len(ran), 2*maxIdleWorkers)
	}
	deadline := time.Now().Add(time.Second)
	for idleWorkers.Load() > maxIdleWorkers && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := idleWorkers.Load(); n > maxIdleWorkers || n < 1 {
		t.Fatalf("%d goroutines wait for work; want 1 to %d", n, maxIdleWorkers)
	}
	done := make(chan struct{})
	Go(func() { close(done) })
	<-done
}
