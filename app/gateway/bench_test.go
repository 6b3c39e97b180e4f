package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/parley-im/parley/app/auth"
	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/domain"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// benchBody is a typical short chat message.
const benchBody = "Let's move the stand-up to 10:30, the release review runs late today."

var benchCodecs = []struct {
	name  string
	codec codec
}{{"json", jsonCodec{}}, {"proto", protoCodec{}}}

// BenchmarkEncodeMsg measures the frame every push sends: a stored message.
func BenchmarkEncodeMsg(b *testing.B) {
	m := &domain.Message{
		ID: "mQ2V7XKJH3ZP4W5R6T7Y8U9I0O", Conv: "d:alice~bob", Seq: 123456, Sender: "alice",
		ClientMsgID: "web-1700000000000-42", ContentType: domain.Text, Body: benchBody, ServerMs: 1700000000000,
	}
	for _, tc := range benchCodecs {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var n int
			for b.Loop() {
				data, err := tc.codec.encode(&pb.Frame{Type: "msg", Msg: toPB(m)})
				if err != nil {
					b.Fatal(err)
				}
				n = len(data)
			}
			b.SetBytes(int64(n))
		})
	}
}

// BenchmarkDecodeSend measures the frame clients send most: a send.
func BenchmarkDecodeSend(b *testing.B) {
	f := &pb.Frame{Type: "send", Id: "17", To: "bob", Cmid: "web-1700000000000-42", Body: benchBody}
	for _, tc := range benchCodecs {
		b.Run(tc.name, func(b *testing.B) {
			data, err := tc.codec.encode(f)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var got pb.Frame
				if err := tc.codec.decode(data, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// pipeListener is a net.Listener whose connections are in-memory pipes, so
// that a benchmark can hold 10,000 WebSocket connections in one process
// without 20,000 descriptors.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// fanOut is a gateway with n real connections, each a device of its own
// user, and the clients at the other end of the pipes. Every client reads
// its frames and acknowledges each message, as a device does, so that the
// server's pending-ACK sets stay small.
type fanOut struct {
	srv      *Server
	hub      *delivery.Hub
	httpSrv  *http.Server
	ln       *pipeListener
	clients  []*websocket.Conn
	conv     *domain.Conversation
	received atomic.Int64 // message frames read by all clients
	expect   atomic.Int64
	reached  chan struct{}
	readers  sync.WaitGroup
}

func newFanOut(b *testing.B, n int, binary bool) *fanOut {
	b.Helper()
	verifier, err := auth.New(context.Background(), auth.Config{HS256Secret: []byte("benchmark-secret-benchmark-secret!")})
	if err != nil {
		b.Fatal(err)
	}
	// Metrics on, as in production: their cost is part of delivery's.
	m, err := metrics.New(metrics.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	hub := delivery.NewHub()
	f := &fanOut{
		hub: hub, ln: newPipeListener(), reached: make(chan struct{}, 1),
		srv: New(Config{NodeID: "bench", MaxFrameRate: 1 << 30, MaxFrameBurst: 1 << 30, Metrics: m}, zap.NewNop(), verifier,
			settings.NewLive(settings.Defaults()), hub, UseCases{}, nil, nil),
		conv: &domain.Conversation{ID: "g:bench", Kind: domain.Group},
	}
	f.httpSrv = &http.Server{Handler: f.srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.httpSrv.Serve(f.ln) }()
	b.Cleanup(f.close)

	d := websocket.Dialer{NetDialContext: f.ln.dial, ReadBufferSize: 1024, WriteBufferSize: 1024}
	if binary {
		d.Subprotocols = []string{SubprotocolProto}
	}
	f.clients = make([]*websocket.Conn, n)
	f.conv.Members = make([]domain.UserID, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		user := domain.UserID("u" + strconv.Itoa(i))
		f.conv.Members[i] = user
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			tok, err := verifier.Issue(user, time.Hour)
			if err != nil {
				errs <- err
				return
			}
			ws, _, err := d.Dial("ws://bench/v1/ws?token="+tok, nil)
			if err != nil {
				errs <- err
				return
			}
			if _, _, err := ws.ReadMessage(); err != nil { // hello
				errs <- err
				return
			}
			f.clients[i] = ws
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("connect: %v", err)
	}
	if got := hub.Count(); got != n {
		b.Fatalf("hub holds %d sessions, want %d", got, n)
	}
	for _, ws := range f.clients {
		f.readers.Add(1)
		go f.read(ws, binary)
	}
	return f
}

// read counts message frames and ACKs each by its seq, which is the count:
// every client receives every message, in order.
func (f *fanOut) read(ws *websocket.Conn, binary bool) {
	defer f.readers.Done()
	var buf [512]byte
	var ack []byte
	var seq uint64
	mt := websocket.TextMessage
	if binary {
		mt = websocket.BinaryMessage
	}
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return
		}
		for {
			if _, err := r.Read(buf[:]); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return
			}
		}
		seq++
		if binary {
			ack, _ = proto.MarshalOptions{}.MarshalAppend(ack[:0], &pb.Frame{Type: "recv", Conv: "g:bench", Seq: seq})
		} else {
			ack = strconv.AppendUint(append(ack[:0], `{"type":"recv","conv":"g:bench","seq":`...), seq, 10)
			ack = append(ack, '}')
		}
		if err := ws.WriteMessage(mt, ack); err != nil {
			return
		}
		if n := f.received.Add(1); n == f.expect.Load() {
			select {
			case f.reached <- struct{}{}:
			default:
			}
		}
	}
}

// drain waits until the clients have read want message frames in all: the
// writers have sent everything queued.
func (f *fanOut) drain(b *testing.B, want int64) {
	select {
	case <-f.reached:
	default:
	}
	f.expect.Store(want)
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for f.received.Load() < want {
		select {
		case <-f.reached:
		case <-t.C:
			b.Fatalf("clients read %d of %d frames within a minute; %d sessions left", f.received.Load(), want, f.hub.Count())
		}
	}
}

func (f *fanOut) close() {
	for _, ws := range f.clients {
		if ws != nil {
			_ = ws.Close()
		}
	}
	f.readers.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = f.httpSrv.Close()
	_ = f.srv.Shutdown(ctx)
}

// BenchmarkFanOut delivers one message to n local connections through
// delivery.Hub and real gateway connections (reader, on-demand writer,
// pending-ACK tracking), over in-memory pipes to clients that read and
// acknowledge every frame. ns/op is one message to all n devices; ns/recv
// is per device. The writers are drained before the timer stops.
// allocs/op include the clients' own, which run in the same process.
func BenchmarkFanOut(b *testing.B) {
	for _, tc := range benchCodecs {
		for _, n := range []int{1, 100, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/%d", tc.name, n), func(b *testing.B) {
				f := newFanOut(b, n, tc.codec.binary())
				// A window keeps each write queue well under its bound
				// (MaxQueueFrames): the benchmark measures delivery, not
				// slow-consumer disconnects.
				window := min(256, f.srv.cfg.MaxQueueFrames/4)
				ctx := context.Background()
				var sent int64
				b.ReportAllocs()
				for b.Loop() {
					sent++
					m := &domain.Message{
						ID: "m" + strconv.FormatInt(sent, 10), Conv: f.conv.ID, Seq: uint64(sent), Sender: "sender",
						ClientMsgID: "c" + strconv.FormatInt(sent, 10), ContentType: domain.Text, Body: benchBody, ServerMs: 1700000000000,
					}
					f.hub.Deliver(ctx, f.conv, m, "")
					if sent%int64(window) == 0 {
						f.drain(b, sent*int64(n))
					}
				}
				// b.Loop stopped the timer; the last partial window is
				// still part of the work.
				b.StartTimer()
				f.drain(b, sent*int64(n))
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent*int64(n)), "ns/recv")
			})
		}
	}
}
