package main

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// testUnitsGroup: a group created on each unit in turn is homed there.
// Members on both units send, rename it and recall through their own unit;
// every device, on either unit, gets every message and event once in one
// gap-free order, and history, sync, read cursors and the listing read the
// same from both sides.
func testUnitsGroup(t *testing.T, env *unitsEnv) {
	for _, home := range []*unitEnv{env.onprem, env.cloud} {
		t.Run("homed_in_"+home.name, func(t *testing.T) {
			ctx := ctxT(t, 2*time.Minute)
			owner, on, cl := daprdtest.UniqueName("gown"), daprdtest.UniqueName("gon"), daprdtest.UniqueName("gcl")
			ownerDev := connectDevice(t, home.node(), owner, "web")
			onDev := connectDevice(t, env.onprem.node(), on, "web")
			clDev := connectDevice(t, env.cloud.node(), cl, "web")
			created, err := ownerDev.c.CreateGroup(ctx, client.NewGroup{Name: "units", Users: []string{on, cl}})
			if err != nil {
				t.Fatalf("create on %s: %v", home.name, err)
			}
			g := created.Conv
			if got := homeOf(t, ctx, g); got != home.name {
				t.Fatalf("the group is homed in %q, want %s", got, home.name)
			}
			var mu sync.Mutex
			acked := map[uint64]string{created.Event.Seq: created.Event.Id}
			firstOf := map[*device]uint64{}
			keep := func(m *pb.Message) {
				mu.Lock()
				acked[m.Seq] = m.Id
				mu.Unlock()
			}
			var wg sync.WaitGroup
			for _, d := range []*device{ownerDev, onDev, clDev} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 6 {
						m, err := d.c.Send(ctx, "", g, fmt.Sprint("g", i), "to the group from "+d.name)
						if err != nil {
							t.Errorf("%s sends: %v", d.name, err)
							return
						}
						keep(m)
						d.inbox.Add(m) // its ACK: the sending device gets no push of it
						if i == 0 {
							mu.Lock()
							firstOf[d] = m.Seq
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			// The member on the other unit than the home recalls their
			// first message; the owner renames through the home.
			other := clDev
			if home == env.cloud {
				other = onDev
			}
			first := firstOf[other]
			ev, err := other.c.Recall(ctx, g, first, "recall-1")
			if err != nil {
				t.Fatalf("%s recalls through its unit: %v", other.name, err)
			}
			keep(ev)
			renamed, err := ownerDev.c.ChangeGroup(ctx, g, client.GroupChange{Op: client.OpRename, Name: "units renamed"})
			if err != nil {
				t.Fatalf("rename: %v", err)
			}
			keep(renamed.Event)
			for _, d := range []*device{ownerDev, onDev, clDev} {
				waitInbox(t, d, g, len(acked), 30*time.Second)
				checkComplete(t, d, g, acked)
			}
			last := uint64(len(acked))
			for _, d := range []*device{onDev, clDev} {
				msgs, err := d.c.Sync(ctx, g, 0)
				if err != nil {
					t.Fatalf("%s syncs: %v", d.name, err)
				}
				if len(msgs) != len(acked) || msgs[len(msgs)-1].Seq != last {
					t.Fatalf("%s synced %d messages, %d were ACKed", d.name, len(msgs), len(acked))
				}
				if seq, err := d.c.MarkRead(ctx, g, last); err != nil || seq != last {
					t.Fatalf("%s marks read: %d, %v", d.name, seq, err)
				}
				convs, err := d.c.Conversations(ctx)
				if err != nil {
					t.Fatal(err)
				}
				i := slices.IndexFunc(convs, func(pc *pb.Conversation) bool { return pc.Id == g })
				if i < 0 || convs[i].LastSeq != last || convs[i].ReadSeq != last || convs[i].GetGroup().GetName() != "units renamed" {
					t.Fatalf("%s's listing: %v, want %s at %d read to %d, renamed", d.name, convs, g, last, last)
				}
			}
		})
	}
}

// testUnitsService: a customer on cloud writes to a shop whose account is
// connected to onprem: the conversation is homed in cloud, where it
// started; the shop's replies through onprem are stored there, and both
// sides' devices get every message once, in order.
func testUnitsService(t *testing.T, env *unitsEnv) {
	ctx := ctxT(t, time.Minute)
	customer := daprdtest.UniqueName("cust")
	custDev := connectDevice(t, env.cloud.node(), customer, "phone")
	shopDev := connectDevice(t, env.onprem.node(), unitsShop, "desk")
	first, err := custDev.c.Send(ctx, unitsShop, "", "q1", "is it in stock?")
	if err != nil {
		t.Fatal(err)
	}
	conv := first.Conv
	if got := homeOf(t, ctx, conv); got != "cloud" {
		t.Fatalf("%s is homed in %q, want cloud", conv, got)
	}
	custDev.inbox.Add(first)
	acked := map[uint64]string{first.Seq: first.Id}
	waitInbox(t, shopDev, conv, 1, 20*time.Second)
	for i := range 3 {
		m, err := shopDev.c.Send(ctx, "", conv, fmt.Sprint("a", i), "yes")
		if err != nil {
			t.Fatalf("the shop replies through onprem: %v", err)
		}
		shopDev.inbox.Add(m)
		acked[m.Seq] = m.Id
		m, err = custDev.c.Send(ctx, unitsShop, "", fmt.Sprint("q", i+2), "thanks")
		if err != nil {
			t.Fatal(err)
		}
		custDev.inbox.Add(m)
		acked[m.Seq] = m.Id
	}
	for _, d := range []*device{custDev, shopDev} {
		waitInbox(t, d, conv, len(acked), 20*time.Second)
		checkComplete(t, d, conv, acked)
	}
	msgs, err := shopDev.c.Sync(ctx, conv, 0)
	if err != nil || len(msgs) != len(acked) {
		t.Fatalf("the shop syncs through onprem: %d messages, %v; want %d", len(msgs), err, len(acked))
	}
}
