package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	pb "github.com/parley-im/parley/proto/parley/v1"
	"github.com/parley-im/parley/tools/testkit"
)

// moveConv asks base's operator API to move conv to the unit named to.
func moveConv(ctx context.Context, base, conv, to string) (unit string, epoch uint64, err error) {
	req, _ := json.Marshal(map[string]string{"conv": conv, "to": to})
	var out struct {
		Unit  string `json:"unit"`
		Epoch uint64 `json:"epoch"`
	}
	err = client.DoJSON(ctx, http.MethodPost, base+"/v1/admin/units/move", unitsAdminToken, req, &out)
	return out.Unit, out.Epoch, err
}

// historyOf reads conv's whole history through base.
func historyOf(t *testing.T, ctx context.Context, base, tok, conv string) (seqs []uint64, ids []string) {
	t.Helper()
	for after := uint64(0); ; {
		var page struct {
			Messages []struct {
				ID  string `json:"id"`
				Seq uint64 `json:"seq"`
			} `json:"messages"`
			More bool `json:"more"`
		}
		if err := client.DoJSON(ctx, http.MethodGet, fmt.Sprintf("%s/v1/conversations/%s/messages?after=%d&limit=200", base, conv, after), tok, nil, &page); err != nil {
			t.Fatalf("history of %s through %s: %v", conv, base, err)
		}
		for _, m := range page.Messages {
			seqs, ids = append(seqs, m.Seq), append(ids, m.ID)
		}
		if !page.More || len(page.Messages) == 0 {
			return seqs, ids
		}
		after = seqs[len(seqs)-1]
	}
}

// testUnitsMove: a conversation homed on onprem moves to cloud while both
// members send through both units. Sends refused during the move are
// retried with the same cmid, as a client does. Afterwards the new home's
// history holds every ACKed message once at the seq its ACK gave, seqs
// 1..N with no gap, read from either unit; a device on cloud got every
// message; a retry of a send ACKed before the move gets its old seq; and
// the next send gets N+1.
func testUnitsMove(t *testing.T, env *unitsEnv) {
	ctx := ctxT(t, 3*time.Minute)
	a, b := daprdtest.UniqueName("mva"), daprdtest.UniqueName("mvb")
	conv := directConv(a, b)
	ta, tb := token(t, env.onprem.node(), a), token(t, env.cloud.node(), b)
	bDev := connectDevice(t, env.cloud.node(), b, "web")
	firstSeq, firstID, err := httpSend(ctx, env.onprem.parley.base, ta, b, "", "first", "homed on onprem")
	if err != nil {
		t.Fatal(err)
	}
	if h := homeOf(t, ctx, conv); h != "onprem" {
		t.Fatalf("%s is homed in %q, want onprem", conv, h)
	}
	var mu sync.Mutex
	acked := map[uint64]string{firstSeq: firstID}
	var codes []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range []struct {
		name, base, tok, to string
	}{{"ann@onprem", env.onprem.parley.base, ta, b}, {"ben@cloud", env.cloud.parley.base, tb, a}, {"ann@cloud", env.cloud.parley.base, ta, b}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cmid := fmt.Sprintf("%s-%d", s.name, i)
				for tries := 0; ; tries++ {
					seq, id, err := httpSend(ctx, s.base, s.tok, s.to, "", cmid, "busy")
					var ce *client.Error
					if errors.As(err, &ce) && ce.Retryable && tries < 200 {
						mu.Lock()
						codes = append(codes, ce.Code)
						mu.Unlock()
						pause(ctx, 20*time.Millisecond) // the client's backoff; same cmid
						continue
					}
					if err != nil {
						t.Errorf("%s send %s: %v", s.name, cmid, err)
						return
					}
					mu.Lock()
					if prev, ok := acked[seq]; ok && prev != id {
						t.Errorf("seq %d ACKed as %s and as %s", seq, prev, id)
					}
					acked[seq] = id
					mu.Unlock()
					break
				}
			}
		}()
	}
	pause(ctx, time.Second)
	// Asked of cloud, the unit it moves to: cloud sends it on to onprem,
	// which runs the move.
	start := time.Now()
	unit, epoch, err := moveConv(ctx, env.cloud.parley.base, conv, "cloud")
	took := time.Since(start)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("move: %v", err)
	}
	if unit != "cloud" || epoch != 2 {
		t.Errorf("the move answered %s at epoch %d, want cloud at 2", unit, epoch)
	}
	mu.Lock()
	atMove := len(acked)
	mu.Unlock()
	pause(ctx, time.Second)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	if h := homeOf(t, ctx, conv); h != "cloud" {
		t.Fatalf("after the move %s is homed in %q", conv, h)
	}
	t.Logf("move of a busy conversation took %v; %d messages ACKed by then, %d in all; %d retryable refusals (%v)",
		took.Round(time.Millisecond), atMove, len(acked), len(codes), uniq(codes))
	if len(acked) <= atMove {
		t.Fatalf("no send was ACKed after the move")
	}
	// Every ACKed message, once, no gap: in the new home, and read through
	// the old one, which sends the read on.
	for _, base := range []string{env.cloud.parley.base, env.onprem.parley.base} {
		seqs, ids := historyOf(t, ctx, base, ta, conv)
		if len(seqs) != len(acked) {
			t.Errorf("through %s: history holds %d messages, %d were ACKed", base, len(seqs), len(acked))
		}
		for i, seq := range seqs {
			if seq != uint64(i+1) {
				t.Fatalf("through %s: position %d holds seq %d: gap", base, i, seq)
			}
			if acked[seq] != ids[i] {
				t.Errorf("through %s: seq %d is %s, the ACK said %s", base, seq, ids[i], acked[seq])
			}
		}
	}
	// The device on cloud got every message pushed, from the old home
	// until the move and from the new one after it.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_ = testkit.Until(wctx, func() bool { return len(bDev.inbox.Messages(conv)) >= len(acked) })
	cancel()
	if got := bDev.inbox.Messages(conv); len(got) != len(acked) {
		held := map[uint64]bool{}
		for _, m := range got {
			held[m.Seq] = true
		}
		for seq := range acked {
			if !held[seq] {
				t.Logf("%s was not pushed seq %d (%s); what the units logged of it:", bDev.name, seq, acked[seq])
				for _, u := range []*unitEnv{env.onprem, env.cloud} {
					data, _ := os.ReadFile(u.parley.log)
					for _, line := range strings.Split(string(data), "\n") {
						if strings.Contains(line, acked[seq]) {
							t.Logf("  %s: %s", u.name, line)
						}
					}
				}
			}
		}
	}
	checkComplete(t, bDev, conv, acked)
	// The idempotency records moved: a retry of the first send, through
	// the old home, gets its seq back instead of a second copy.
	if seq, id, err := httpSend(ctx, env.onprem.parley.base, ta, b, "", "first", "homed on onprem"); err != nil || seq != firstSeq || id != firstID {
		t.Fatalf("retry of the first send after the move: seq %d id %s, %v; want seq %d", seq, id, err, firstSeq)
	}
	if seq, _, err := httpSend(ctx, env.onprem.parley.base, ta, b, "", "after", "after the move"); err != nil || seq != uint64(len(acked)+1) {
		t.Fatalf("send after the move: seq %d, %v; want %d", seq, err, len(acked)+1)
	}
	testStaleRoute(t, ctx, env, a, conv, uint64(len(acked)+1))
}

// testStaleRoute: a client that sends with the route it cached before the
// move (onprem at epoch 1) has its send stored once, and the ACK carries
// the current route; a send with the current route gets an ACK without one.
func testStaleRoute(t *testing.T, ctx context.Context, env *unitsEnv, user, conv string, last uint64) {
	c := dial(t, env.onprem.node(), user, "cached-route")
	for i, tc := range []struct {
		unit      string
		epoch     uint64
		wantUnit  string
		wantEpoch uint64
	}{
		{"onprem", 1, "cloud", 2},
		{"cloud", 2, "", 0},
	} {
		reply, err := c.Request(ctx, &pb.Frame{Type: "send", Conv: conv, Cmid: fmt.Sprint("cached-", i), Body: "with a route", Unit: tc.unit, Epoch: tc.epoch})
		if err != nil {
			t.Fatalf("send with route %s@%d: %v", tc.unit, tc.epoch, err)
		}
		if reply.Type != "ack" || reply.Msg.GetSeq() != last+uint64(i)+1 || reply.Unit != tc.wantUnit || reply.Epoch != tc.wantEpoch {
			t.Fatalf("send with route %s@%d: %s seq %d route %q@%d; want ack seq %d route %q@%d", tc.unit, tc.epoch,
				reply.Type, reply.Msg.GetSeq(), reply.Unit, reply.Epoch, last+uint64(i)+1, tc.wantUnit, tc.wantEpoch)
		}
	}
	seqs, _ := historyOf(t, ctx, env.cloud.parley.base, token(t, env.cloud.node(), user), conv)
	if len(seqs) != int(last)+2 {
		t.Fatalf("history holds %d messages after two sends with a route, want %d", len(seqs), last+2)
	}
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
