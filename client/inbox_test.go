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
