package dapr_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// TestBinaryPayloadsRoundTrip sends every byte value, which is not valid
// UTF-8, through state and pub/sub: parley's envelopes are protobuf.
func TestBinaryPayloadsRoundTrip(t *testing.T) {
	n := startNode(t, daprdtest.Local)
	b := n.client.Backend()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	payload := make([]byte, 256)
	for i := range payload {
		payload[i] = byte(255 - i)
	}

	key := daprdtest.UniqueName("binary")
	if err := b.State.Set(ctx, key, payload); err != nil {
		t.Fatal(err)
	}
	it, err := b.State.Get(ctx, key)
	if err != nil || !bytes.Equal(it.Value, payload) {
		t.Fatalf("state round trip = %x, %v", it.Value, err)
	}

	got := make(chan []byte, 1)
	topic := daprdtest.UniqueName("binary")
	sub, err := b.PubSub.Subscribe(ctx, topic, func(_ context.Context, m *infrastructure.Message) infrastructure.Outcome {
		select {
		case got <- m.Data:
		default:
		}
		return infrastructure.Success
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := b.PubSub.Publish(ctx, topic, payload); err != nil {
		t.Fatal(err)
	}
	select {
	case data := <-got:
		if !bytes.Equal(data, payload) {
			t.Fatalf("pub/sub round trip = %x", data)
		}
	case <-ctx.Done():
		t.Fatal("message never arrived")
	}
}
