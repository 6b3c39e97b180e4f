package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	pb "github.com/parley-im/parley/proto/parley/v1"
	"github.com/parley-im/parley/tools/testkit"
)

// The restart backlog: a node killed with SIGKILL is still listed by the
// others until its lease runs out, so they keep publishing its devices'
// messages to its topic. Restarted under the same id, it finds that
// backlog on the topic while its devices, reconnected at once, sync. A
// device must not be pushed, after its sync, what the sync gave it, and
// what it is pushed should come in seq order.

// backlogConn is what one connection of a device saw, in wire order.
type backlogConn struct {
	helloMs int64 // client clock when the hello frame arrived
	synced  map[string]bool
	pushed  map[string]bool
	pushes  int
	// doubles are pushes of a message this connection was pushed before.
	doubles int
	// repeats are pushes of messages stored before the connection opened
	// that the connection's own sync had already returned.
	repeats []string
	// disorder are pushes of a seq below one already pushed.
	disorder []string
}

// backlogDevice is one device on a raw WebSocket that reconnects to the
// same node as fast as it can, and syncs on every connection. One reader
// goroutine handles every frame, so the order of pushes and sync answers
// is the order on the wire.
type backlogDevice struct {
	name, tok, conv string
	base            func() string
	inbox           *client.Inbox
	live, synced    atomic.Int64

	mu      sync.Mutex
	conns   []*backlogConn
	ready   bool // the current connection's sync is complete
	stopped chan struct{}
}

func (d *backlogDevice) run(ctx context.Context) {
	defer close(d.stopped)
	for ctx.Err() == nil {
		if err := d.connection(ctx); err != nil {
			pause(ctx, 10*time.Millisecond) // reconnect at once, as a client that saw its socket drop
		}
	}
}

// connection runs one connection to its end.
func (d *backlogDevice) connection(ctx context.Context) error {
	u := "ws" + strings.TrimPrefix(d.base(), "http") + "/v1/ws?device=" + d.name
	hdr := map[string][]string{"Authorization": {"Bearer " + d.tok}}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, u, hdr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	defer stop()
	defer ws.Close()
	var wmu sync.Mutex
	write := func(v map[string]any) error {
		data, _ := json.Marshal(v)
		wmu.Lock()
		defer wmu.Unlock()
		return ws.WriteMessage(websocket.TextMessage, data)
	}
	bc := &backlogConn{synced: map[string]bool{}, pushed: map[string]bool{}}
	lastPushed := uint64(0)
	syncID := 0
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			d.mu.Lock()
			d.ready = false
			d.mu.Unlock()
			return err
		}
		var f pb.Frame
		if err := json.Unmarshal(data, &f); err != nil {
			return err
		}
		switch f.Type {
		case "hello":
			bc.helloMs = time.Now().UnixMilli()
			d.mu.Lock()
			d.conns = append(d.conns, bc)
			d.mu.Unlock()
			syncID++
			if err := write(map[string]any{"type": "sync", "id": fmt.Sprint(syncID), "conv": d.conv, "seq": d.inbox.Contiguous(d.conv)}); err != nil {
				return err
			}
		case "msg":
			m := f.Msg
			if err := write(map[string]any{"type": "recv", "conv": m.Conv, "seq": m.Seq}); err != nil {
				return err
			}
			d.mu.Lock()
			bc.pushes++
			if bc.pushed[m.Id] {
				bc.doubles++
			}
			bc.pushed[m.Id] = true
			// 50 ms below the hello is before the server opened the
			// connection: a message stored then is one a sync returns.
			if bc.synced[m.Id] && m.Ts < bc.helloMs-50 {
				bc.repeats = append(bc.repeats, fmt.Sprintf("#%d(stored %dms before the connection)", m.Seq, bc.helloMs-m.Ts))
			}
			if m.Seq < lastPushed {
				bc.disorder = append(bc.disorder, fmt.Sprintf("#%d after #%d", m.Seq, lastPushed))
			}
			lastPushed = max(lastPushed, m.Seq)
			d.mu.Unlock()
			if d.inbox.Add(m) {
				d.live.Add(1)
			}
		case "sync_result":
			d.mu.Lock()
			for _, m := range f.Messages {
				bc.synced[m.Id] = true
			}
			d.mu.Unlock()
			for _, m := range f.Messages {
				if d.inbox.Add(m) {
					d.synced.Add(1)
				}
			}
			if f.More && len(f.Messages) > 0 {
				syncID++
				if err := write(map[string]any{"type": "sync", "id": fmt.Sprint(syncID), "conv": d.conv, "seq": f.Messages[len(f.Messages)-1].Seq}); err != nil {
					return err
				}
				continue
			}
			d.mu.Lock()
			d.ready = true
			d.mu.Unlock()
		}
	}
}

// reconnected reports whether the device holds a connection opened after
// since whose sync is complete.
func (d *backlogDevice) reconnected(since time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ready && len(d.conns) > 0 && d.conns[len(d.conns)-1].helloMs >= since.UnixMilli()
}

// TestRestartBacklog: three nodes on redis; a node is killed with SIGKILL
// and restarted under the same node id while the other two keep sending to
// a group whose members' devices were on it. The devices reconnect to it
// within milliseconds of its restart and sync. No device is pushed a
// message, stored before its connection opened, that its sync already
// gave it, pushes on a connection come in seq order, and every device ends
// up holding every ACKed message. It runs with a small group (presence
// says which nodes hold members' devices) and a large one (sent to every
// node).
//
// Pushes on a connection of a cluster node are not in seq order today when
// several nodes send to one conversation (each message reaches the node on
// its own through pub/sub); PARLEY_STRICT_ORDER=1 makes that a failure
// instead of a logged count.
func TestRestartBacklog(t *testing.T) {
	strictOrder := os.Getenv("PARLEY_STRICT_ORDER") == "1"
	for _, tc := range []struct {
		name    string
		members int
	}{
		{name: "small_group", members: 12},
		{name: "large_group", members: 70},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const victim = 2
			start := time.Now()
			// The lease outlives the outage, so the others keep handing
			// messages to the dead node's topic.
			cl := startCluster(t, daprdtest.Redis, 3, map[string]string{"parley.send_rate_per_sec": "100000"}, "-lease-ttl", "20s")
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			users := make([]string, tc.members)
			for i := range users {
				users[i] = fmt.Sprintf("r%02d", i)
			}
			conv, events := createGroup(ctx, t, func() string { return cl.base(0) }, users[0], users[1:])
			l := &ledger{seqs: maps.Clone(events)}

			// Every member but the two senders has a device on the victim.
			var devs []*backlogDevice
			devCtx, stopDevs := context.WithCancel(ctx)
			defer stopDevs()
			victimBase := cl.procs[victim].base
			for _, u := range users[2:] {
				d := &backlogDevice{name: u, tok: mintToken(t, u), conv: conv, base: func() string { return victimBase },
					inbox: client.NewInbox(), stopped: make(chan struct{})}
				devs = append(devs, d)
				go d.run(devCtx)
			}
			testkit.Eventually(t, 60*time.Second, func() bool {
				for _, d := range devs {
					if !d.reconnected(start) {
						return false
					}
				}
				return true
			}, "not every device connected and synced within 60s")

			var sending atomic.Bool
			sending.Store(true)
			var wg sync.WaitGroup
			for s := range 2 {
				wg.Go(func() {
					tok := mintToken(t, users[s])
					for i := 0; sending.Load() && ctx.Err() == nil; i++ {
						sendOne(ctx, t, l, func() string { return cl.base(s) }, tok, users[s], conv, i)
						pause(ctx, 20*time.Millisecond) // the senders' pace
					}
				})
			}
			testkit.Eventually(t, 60*time.Second, func() bool { return l.len() >= len(events)+20 }, "traffic did not start: %d ACKs", l.len())
			cl.kill(victim)
			killedAt := l.len()
			pause(ctx, 3*time.Second) // the node stays down a while, as after a crash
			restart := time.Now()
			cl.procs[victim].launch(t)
			cl.up[victim].Store(true)
			testkit.Eventually(t, 60*time.Second, func() bool {
				for _, d := range devs {
					if !d.reconnected(restart) {
						return false
					}
				}
				return true
			}, "not every device reconnected to the restarted node and synced within 60s")
			reconnectedIn := time.Since(restart)
			pause(ctx, 2*time.Second) // traffic goes on a while after the restart
			sending.Store(false)
			wg.Wait()
			if t.Failed() {
				return
			}
			want := l.snapshot()
			catchUp, cancelCatchUp := context.WithTimeout(ctx, 60*time.Second)
			defer cancelCatchUp()
			_ = testkit.Until(catchUp, func() bool {
				for _, d := range devs {
					if len(d.inbox.Messages(conv)) < len(want) {
						return false
					}
				}
				return true
			})
			stopDevs()
			var live, synced, dups, doubles, pushesAfter, repeats, disorder, lost int64
			for _, d := range devs {
				<-d.stopped
				d.mu.Lock()
				for i, bc := range d.conns {
					if i > 0 {
						pushesAfter += int64(bc.pushes)
					}
					repeats += int64(len(bc.repeats))
					disorder += int64(len(bc.disorder))
					if len(bc.repeats) > 0 {
						t.Errorf("%s, connection %d: pushed %d messages its sync had given it: %v", d.name, i+1, len(bc.repeats), bc.repeats)
					}
					doubles += int64(bc.doubles)
					if len(bc.disorder) > 0 && strictOrder {
						t.Errorf("%s, connection %d: %d pushes out of seq order: %v", d.name, i+1, len(bc.disorder), bc.disorder[:min(10, len(bc.disorder))])
					}
				}
				d.mu.Unlock()
				have := map[string]bool{}
				got := d.inbox.Messages(conv)
				for i, m := range got {
					have[m.Id] = true
					if m.Seq != uint64(i+1) {
						t.Errorf("%s: position %d holds seq %d: a gap", d.name, i, m.Seq)
						break
					}
				}
				for seq, id := range want {
					if !have[id] {
						lost++
						t.Errorf("%s lost ACKed message #%d (%s)", d.name, seq, id)
					}
				}
				live += d.live.Load()
				synced += d.synced.Load()
				dups += int64(d.inbox.Duplicates())
			}
			t.Logf("restart backlog %s (%d members, %d devices on the restarted node, killed after %d ACKs, reconnected and synced %v after the restart): "+
				"acked=%d delivered_live=%d synced=%d duplicates_dropped=%d pushes_after_restart=%d pushed_twice=%d repeated_pushes=%d out_of_order_pushes=%d lost=%d (%v)",
				tc.name, tc.members, len(devs), killedAt, reconnectedIn.Round(time.Millisecond),
				len(want), live, synced, dups, pushesAfter, doubles, repeats, disorder, lost, time.Since(start).Round(time.Second))
		})
	}
}

// sendOne sends message i of user to conv over HTTP, retrying with its
// cmid until ACKed, and records the ACK.
func sendOne(ctx context.Context, t *testing.T, l *ledger, base func() string, tok, user, conv string, i int) {
	cmid := fmt.Sprintf("%s-%d", user, i)
	body, _ := json.Marshal(map[string]any{"conv": conv, "cmid": cmid, "body": "hello from " + cmid})
	l.sent.Add(1)
	var m pb.Message
	if err := postRetry(ctx, base, "/v1/messages", tok, body, &m); err != nil {
		t.Errorf("send %s: %v", cmid, err)
		return
	}
	if err := l.ack(m.Seq, m.Id, cmid); err != nil {
		t.Error(err)
	}
}
