package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	pb "github.com/parley-im/parley/proto/parley/v1"
	"github.com/parley-im/parley/tools/testkit"
)

// testUnitsPending: with local mode on in onprem, cloud's daprd is killed
// with SIGKILL while a user on onprem sends to a conversation homed in
// cloud. Each WebSocket send is acknowledged as pending, with no seq; an
// HTTP send, which cannot say pending, gets unit_unavailable. Once cloud's
// daprd is back, onprem replays them: cloud stores each once, in the order
// they were sent, after what it held, and every device on both units gets
// every message, the sender's own devices included: lost 0, no gap.
func testUnitsPending(t *testing.T, env *unitsEnv) {
	ctx := ctxT(t, 3*time.Minute)
	if err := env.onprem.setConfig(ctx, env.prefix+"parley.units.local_pending", "true"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.onprem.setConfig(context.Background(), env.prefix+"parley.units.local_pending", "false")
	})
	if err := testkit.Until(ctx, func() bool {
		data, _ := os.ReadFile(env.onprem.parley.log)
		return strings.Contains(string(data), `"msg":"local mode changed","node"`) && strings.Contains(string(data), `"on":true`)
	}); err != nil {
		t.Fatal("onprem never saw local mode turned on")
	}
	a, b := daprdtest.UniqueName("pa"), daprdtest.UniqueName("pb")
	conv := directConv(a, b)
	aOther := connectDevice(t, env.onprem.node(), a, "phone")
	bCloud := connectDevice(t, env.cloud.node(), b, "web")
	first, err := bCloud.c.Send(ctx, a, "", "b0", "homed on cloud")
	if err != nil {
		t.Fatal(err)
	}
	bCloud.inbox.Add(first)
	aWeb := dial(t, env.onprem.node(), a, "web")
	// The first message's hand-off to onprem is done before cloud goes
	// down: one cut off by the kill is left to a sync, which this device
	// does not do.
	waitInbox(t, aOther, conv, 1, 10*time.Second)

	env.cloud.sidecar.Kill()
	ta := token(t, env.onprem.node(), a)
	if _, _, err := httpSend(ctx, env.onprem.parley.base, ta, b, "", "over-http", "cannot be pending"); !isCode(err, "unit_unavailable") {
		t.Fatalf("HTTP send while cloud is down: %v, want unit_unavailable", err)
	}
	const n = 10
	var cmids []string
	for i := range n {
		cmid := fmt.Sprint("p", i)
		reply, err := aWeb.Request(ctx, &pb.Frame{Type: "send", Conv: conv, Cmid: cmid, Body: fmt.Sprint("kept ", i)})
		if err != nil {
			t.Fatalf("send %s while cloud's daprd is down: %v", cmid, err)
		}
		if reply.Type != "ack" || !reply.Pending || reply.Msg.GetSeq() != 0 {
			t.Fatalf("send %s while cloud's daprd is down: %s pending=%v seq %d (%s %s); want a pending ack without a seq",
				cmid, reply.Type, reply.Pending, reply.Msg.GetSeq(), reply.Code, reply.Message)
		}
		cmids = append(cmids, cmid)
	}
	// A retry of a kept send is not kept twice.
	if reply, err := aWeb.Request(ctx, &pb.Frame{Type: "send", Conv: conv, Cmid: "p3", Body: "kept 3"}); err != nil || !reply.Pending {
		t.Fatalf("retry of a kept send: %v, %v", reply, err)
	}
	if err := env.cloud.sidecar.Restart(ctx); err != nil {
		t.Fatalf("restart cloud's daprd: %v", err)
	}
	start := time.Now()
	var seqs []uint64
	var ids []string
	if err := testkit.Until(ctx, func() bool {
		seqs, ids = historyOfErr(ctx, env.cloud.parley.base, token(t, env.cloud.node(), b), conv)
		return len(seqs) >= n+1
	}); err != nil {
		t.Fatalf("after cloud's daprd came back, its history holds %d messages, want %d", len(seqs), n+1)
	}
	t.Logf("the %d kept sends were stored %v after cloud's daprd came back", n, time.Since(start).Round(time.Millisecond))
	acked := map[uint64]string{first.Seq: first.Id}
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("position %d holds seq %d: gap", i, seq)
		}
		acked[seq] = ids[i]
	}
	if len(seqs) != n+1 {
		t.Fatalf("cloud holds %d messages, want %d: a kept send was stored twice", len(seqs), n+1)
	}
	// In the order they were sent: the ids are those of the cmids in turn.
	msgs, err := bCloud.c.Sync(ctx, conv, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if m.Cmid != cmids[i] || m.From != a {
			t.Fatalf("seq %d holds %s/%s, want %s/%s: out of order", m.Seq, m.From, m.Cmid, a, cmids[i])
		}
	}
	for _, d := range []*device{bCloud, aOther} {
		waitInbox(t, d, conv, len(acked), 30*time.Second)
		checkComplete(t, d, conv, acked)
	}
}

// historyOfErr is historyOf that reports a failed read as an empty
// history, for polling while a unit comes back.
func historyOfErr(ctx context.Context, base, tok, conv string) (seqs []uint64, ids []string) {
	var page struct {
		Messages []struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		} `json:"messages"`
	}
	if err := client.DoJSON(ctx, "GET", base+"/v1/conversations/"+conv+"/messages?limit=200", tok, nil, &page); err != nil {
		return nil, nil
	}
	for _, m := range page.Messages {
		seqs, ids = append(seqs, m.Seq), append(ids, m.ID)
	}
	return seqs, ids
}

// isCode reports whether err is the client error with code.
func isCode(err error, code string) bool {
	var ce *client.Error
	return errors.As(err, &ce) && ce.Code == code
}
