package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	pb "github.com/parley-im/parley/proto/parley/v1"
	"github.com/parley-im/parley/tools/testkit"
)

// device is one connected client and everything it received.
type device struct {
	name  string
	c     *client.Client
	inbox *client.Inbox
	done  chan struct{}
}

func connectDevice(t *testing.T, n *node, user, dev string) *device {
	t.Helper()
	d := &device{name: user + "/" + dev, c: dial(t, n, user, dev), inbox: client.NewInbox(), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for m := range d.c.Messages {
			d.inbox.Add(m)
		}
	}()
	return d
}

// waitInbox waits until d holds want messages of conv.
func waitInbox(t *testing.T, d *device, conv string, want int, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	if testkit.Until(ctx, func() bool { return len(d.inbox.Messages(conv)) >= want }) != nil {
		t.Fatalf("%s holds %d of %d messages of %s after %v", d.name, len(d.inbox.Messages(conv)), want, conv, within)
	}
}

// checkComplete asserts that d holds exactly the ACKed messages of conv,
// seqs 1..n with no gap, each once.
func checkComplete(t *testing.T, d *device, conv string, acked map[uint64]string) {
	t.Helper()
	checkLog(t, d.name, conv, d.inbox.Messages(conv), acked)
}

// checkLog asserts that got, what who holds of conv in seq order, is
// exactly the ACKed messages, seqs 1..n with no gap, each once.
func checkLog(t *testing.T, who, conv string, got []*pb.Message, acked map[uint64]string) {
	t.Helper()
	if len(got) != len(acked) {
		t.Errorf("%s holds %d messages of %s, %d were ACKed", who, len(got), conv, len(acked))
	}
	for i, m := range got {
		if m.Seq != uint64(i+1) {
			t.Errorf("%s: position %d holds seq %d: gap", who, i, m.Seq)
			return
		}
		if acked[m.Seq] != m.Id {
			t.Errorf("%s: seq %d is %s, the ACK said %s", who, m.Seq, m.Id, acked[m.Seq])
		}
	}
}

// TestClusterDelivery: three nodes with their own daprd share one backend.
// Users with devices spread over the nodes chat; every device gets every
// message once, and a node killed with SIGKILL loses nothing: its users
// reconnect elsewhere and sync, and its presence disappears with its lease.
func TestClusterDelivery(t *testing.T) {
	for _, profile := range []string{daprdtest.Redis, daprdtest.PostgresRabbitMQ, daprdtest.MySQLMQTT, daprdtest.JetStream} {
		t.Run(profile, func(t *testing.T) {
			m := mode{name: "dapr-" + profile, args: []string{"-backend", "dapr", "-sidecar", "launch", "-profile", profile}}
			requireMode(t, m)
			appID := daprdtest.UniqueName("parley-cluster")
			var procs []*proc
			for i := range 3 {
				procs = append(procs, startProc(t, m, "-app-id", appID, "-node-id", fmt.Sprintf("%s-n%d", appID, i+1), "-lease-ttl", "3s",
					"-jwt-secret", "cluster-test-secret-cluster-test-secret"))
			}
			n1, n2, n3 := procs[0].node(), procs[1].node(), procs[2].node()
			// Every node sees the others through the route endpoint.
			var route struct {
				Nodes []struct{ Node, URL string } `json:"nodes"`
			}
			routeCtx, cancelRoute := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancelRoute()
			if testkit.Until(routeCtx, func() bool {
				if err := client.DoJSON(ctxT(t, 5*time.Second), http.MethodGet, n1.base+"/v1/route", "", nil, &route); err != nil {
					t.Fatal(err)
				}
				return len(route.Nodes) >= 3
			}) != nil {
				t.Fatalf("route lists %d nodes after 20s, want 3", len(route.Nodes))
			}

			aliceWeb := connectDevice(t, n1, "alice", "web")
			alicePhone := connectDevice(t, n2, "alice", "phone")
			bobWeb := connectDevice(t, n2, "bob", "web")
			bobPhone := connectDevice(t, n3, "bob", "phone")
			ctx := ctxT(t, 120*time.Second)
			const conv = "d:alice~bob"
			var mu sync.Mutex
			acked := map[uint64]string{}
			var wg sync.WaitGroup
			send := func(d *device, to, who string, n int) {
				defer wg.Done()
				for i := range n {
					a, err := d.c.Send(ctx, to, "", fmt.Sprintf("%s-%d", who, i), fmt.Sprintf("%s %d", who, i))
					if err != nil {
						t.Errorf("%s send: %v", who, err)
						return
					}
					mu.Lock()
					acked[a.Seq] = a.Id
					mu.Unlock()
					// The sending device holds its message by the ACK: it
					// is not pushed a copy.
					d.inbox.Add(a)
				}
			}
			wg.Add(2)
			go send(aliceWeb, "bob", "alice", 15)
			go send(bobPhone, "alice", "bob", 15)
			wg.Wait()
			if t.Failed() {
				return
			}
			for _, d := range []*device{aliceWeb, alicePhone, bobWeb, bobPhone} {
				// 75 s: a hand-off the receiving daprd did not confirm in
				// time comes back after the broker's redelivery delay
				// (JetStream's ackWait is 60 s), under a loaded machine.
				waitInbox(t, d, conv, len(acked), 75*time.Second)
				checkComplete(t, d, conv, acked)
				if dups := d.inbox.Duplicates(); dups != 0 {
					t.Logf("%s dropped %d duplicate deliveries", d.name, dups)
				}
			}

			// SIGKILL node 3: bob's phone loses its connection.
			procs[2].kill()
			<-bobPhone.done
			// Messages sent while bob's phone is away.
			wg.Add(1)
			go send(aliceWeb, "bob", "alice-late", 10)
			wg.Wait()
			// Node 3's presence goes with its lease (3s).
			var out struct {
				Nodes []struct{ Node string } `json:"nodes"`
			}
			leaseCtx, cancelLease := context.WithTimeout(ctx, 15*time.Second)
			defer cancelLease()
			if testkit.Until(leaseCtx, func() bool {
				out.Nodes = nil
				if err := client.DoJSON(ctx, http.MethodGet, n1.base+"/v1/route", "", nil, &out); err != nil {
					t.Fatal(err)
				}
				return !slices.ContainsFunc(out.Nodes, func(n struct{ Node string }) bool { return n.Node == appID+"-n3" })
			}) != nil {
				t.Fatalf("killed node still routed to after 15s (lease 3s): %v", out.Nodes)
			}
			// The phone reconnects to another node and syncs from what it holds.
			phoneAgain := connectDevice(t, n1, "bob", "phone")
			from := bobPhone.inbox.Contiguous(conv)
			missed, err := phoneAgain.c.Sync(ctx, conv, from)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range missed {
				bobPhone.inbox.Add(m)
			}
			checkComplete(t, bobPhone, conv, acked)
			for _, d := range []*device{aliceWeb, alicePhone, bobWeb} {
				waitInbox(t, d, conv, len(acked), 30*time.Second)
				checkComplete(t, d, conv, acked)
			}
		})
	}
}

// TestRetryOnAnotherNodeRightAfterTheAck: the ACK comes before the commit
// that writes a send's idempotency record, so a retry made at once on
// another node must find the message in the log. Alice sends on one node
// and repeats every send on the other node as soon as its ACK arrives,
// while Bob sends on the other node too: every retry gets the first
// message back, and the log holds each send once, with no gap.
func TestRetryOnAnotherNodeRightAfterTheAck(t *testing.T) {
	m := mode{name: "dapr-" + daprdtest.Redis, args: []string{"-backend", "dapr", "-sidecar", "launch", "-profile", daprdtest.Redis}}
	requireMode(t, m)
	appID := daprdtest.UniqueName("parley-retry")
	var procs []*proc
	for i := range 2 {
		procs = append(procs, startProc(t, m, "-app-id", appID, "-node-id", fmt.Sprintf("%s-n%d", appID, i+1),
			"-jwt-secret", "cluster-test-secret-cluster-test-secret"))
	}
	n1, n2 := procs[0].node(), procs[1].node()
	aliceWeb, alicePhone := dial(t, n1, "alice", "web"), dial(t, n2, "alice", "phone")
	bob := dial(t, n2, "bob", "web")
	ctx := ctxT(t, 90*time.Second)
	const sends = 40
	var mu sync.Mutex
	acked := map[uint64]string{}
	ack := func(m *pb.Message) {
		mu.Lock()
		acked[m.Seq] = m.Id
		mu.Unlock()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range sends {
			a, err := bob.Send(ctx, "alice", "", fmt.Sprintf("b-%d", i), "from bob")
			if err != nil {
				t.Errorf("bob's send %d: %v", i, err)
				return
			}
			ack(a)
		}
	}()
	for i := range sends {
		cmid := fmt.Sprintf("a-%d", i)
		first, err := aliceWeb.Send(ctx, "bob", "", cmid, "from alice")
		if err != nil {
			t.Fatalf("alice's send %d: %v", i, err)
		}
		ack(first)
		retry, err := alicePhone.Send(ctx, "bob", "", cmid, "from alice")
		if err != nil {
			t.Fatalf("alice's retry %d on the other node: %v", i, err)
		}
		if retry.Id != first.Id || retry.Seq != first.Seq {
			t.Fatalf("retry %d on the other node got %s#%d, the first attempt %s#%d", i, retry.Id, retry.Seq, first.Id, first.Seq)
		}
	}
	wg.Wait()
	const conv = "d:alice~bob"
	hist, err := aliceWeb.Sync(ctx, conv, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkLog(t, "alice's history", conv, hist, acked)
}
