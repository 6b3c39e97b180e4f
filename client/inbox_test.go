package client_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/parley-im/parley/client"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

func TestInbox(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		add            []*pb.Message
		conv           string
		wantSeqs       []uint64
		wantContiguous uint64
		wantDups       int
	}{
		{"empty", nil, "c", []uint64{}, 0, 0},
		{"in_order", []*pb.Message{{Id: "a", Conv: "c", Seq: 1}, {Id: "b", Conv: "c", Seq: 2}}, "c", []uint64{1, 2}, 2, 0},
		{"out_of_order_kept_in_seq_order", []*pb.Message{{Id: "b", Conv: "c", Seq: 2}, {Id: "a", Conv: "c", Seq: 1}}, "c", []uint64{1, 2}, 2, 0},
		{"gap_stops_contiguous", []*pb.Message{{Id: "a", Conv: "c", Seq: 1}, {Id: "c", Conv: "c", Seq: 3}}, "c", []uint64{1, 3}, 1, 0},
		{"missing_first", []*pb.Message{{Id: "b", Conv: "c", Seq: 2}}, "c", []uint64{2}, 0, 0},
		{"duplicate_by_id", []*pb.Message{{Id: "a", Conv: "c", Seq: 1}, {Id: "a", Conv: "c", Seq: 1}}, "c", []uint64{1}, 1, 1},
		{"other_conversation_apart", []*pb.Message{{Id: "a", Conv: "c", Seq: 1}, {Id: "x", Conv: "d", Seq: 2}}, "c", []uint64{1}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := client.NewInbox()
			for _, m := range tc.add {
				in.Add(m)
			}
			seqs := []uint64{}
			for _, m := range in.Messages(tc.conv) {
				seqs = append(seqs, m.Seq)
			}
			if !slices.Equal(seqs, tc.wantSeqs) {
				t.Errorf("Messages = seqs %v, want %v", seqs, tc.wantSeqs)
			}
			if got := in.Contiguous(tc.conv); got != tc.wantContiguous {
				t.Errorf("Contiguous = %d, want %d", got, tc.wantContiguous)
			}
			if got := in.Duplicates(); got != tc.wantDups {
				t.Errorf("Duplicates = %d, want %d", got, tc.wantDups)
			}
		})
	}
}

func TestInboxConversationsSorted(t *testing.T) {
	t.Parallel()
	in := client.NewInbox()
	for _, c := range []string{"g:b", "d:a~b", "g:a"} {
		in.Add(&pb.Message{Id: c, Conv: c, Seq: 1})
	}
	if got := in.Conversations(); !slices.Equal(got, []string{"d:a~b", "g:a", "g:b"}) {
		t.Errorf("Conversations = %v, want them sorted", got)
	}
}

// TestInboxConcurrentAdds: live pushes and a sync may add the same message
// at once; it is kept once.
func TestInboxConcurrentAdds(t *testing.T) {
	t.Parallel()
	in := client.NewInbox()
	var wg sync.WaitGroup
	kept := make([]int, 8)
	for w := range 8 {
		wg.Go(func() {
			for seq := uint64(1); seq <= 100; seq++ {
				if in.Add(&pb.Message{Id: string(rune(seq)), Conv: "c", Seq: seq}) {
					kept[w]++
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for _, k := range kept {
		total += k
	}
	if total != 100 || in.Duplicates() != 700 || in.Contiguous("c") != 100 {
		t.Errorf("kept %d, duplicates %d, contiguous %d; want 100, 700, 100", total, in.Duplicates(), in.Contiguous("c"))
	}
}

// TestInboxAppliesRecallsAndEdits: what the inbox holds of a message is
// what history shows, in whatever order the message and its events came.
func TestInboxAppliesRecallsAndEdits(t *testing.T) {
	t.Parallel()
	const conv = "g:x"
	target := &pb.Message{Id: "m2", Conv: conv, Seq: 2, From: "bob", Ctype: "text", Body: "teh typo"}
	event := func(seq uint64, body string) *pb.Message {
		return &pb.Message{Id: "e" + string(rune('0'+seq)), Conv: conv, Seq: seq, From: "bob", Ctype: "system", Body: body}
	}
	edit1 := event(3, `{"type":"message.edited","actor":"bob","target":2,"ctype":"text","body":"the typo"}`)
	edit2 := event(4, `{"type":"message.edited","actor":"bob","target":2,"ctype":"json","body":"{\"fixed\":true}"}`)
	recall := event(5, `{"type":"message.recalled","actor":"bob","target":2}`)
	other := event(6, `{"type":"member.joined","actor":"alice","users":["dave"]}`)
	for _, tc := range []struct {
		name         string
		add          []*pb.Message
		wantBody     string
		wantCtype    string
		wantEdited   bool
		wantRecalled bool
	}{
		{"untouched", []*pb.Message{target, other}, "teh typo", "text", false, false},
		{"edit_after_target", []*pb.Message{target, edit1}, "the typo", "text", true, false},
		{"edit_before_target", []*pb.Message{edit1, target}, "the typo", "text", true, false},
		{"latest_edit_wins", []*pb.Message{target, edit2, edit1}, `{"fixed":true}`, "json", true, false},
		{"recall", []*pb.Message{target, edit1, recall}, "", "text", false, true},
		{"recall_before_target", []*pb.Message{recall, target}, "", "text", false, true},
		{"edit_after_recall_changes_nothing", []*pb.Message{target, recall, edit2}, "", "text", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := client.NewInbox()
			for _, m := range tc.add {
				in.Add(m)
			}
			got := in.Message(conv, 2)
			if got == nil {
				t.Fatal("the target is not held")
			}
			if got.Body != tc.wantBody || got.Ctype != tc.wantCtype || got.Edited != tc.wantEdited || got.Recalled != tc.wantRecalled {
				t.Errorf("held %v; want body %q ctype %s edited %v recalled %v", got, tc.wantBody, tc.wantCtype, tc.wantEdited, tc.wantRecalled)
			}
			if target.Body != "teh typo" || target.Edited || target.Recalled {
				t.Errorf("the message given to Add was modified: %v", target)
			}
			if n := len(in.Messages(conv)); n != len(tc.add) {
				t.Errorf("holds %d messages, want %d: events are held at their own seq", n, len(tc.add))
			}
		})
	}
}
