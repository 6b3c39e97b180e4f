package memory_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/parley-im/parley/infrastructure"

	"github.com/parley-im/parley/infrastructure/contract"
	"github.com/parley-im/parley/infrastructure/memory"
)

func TestContract(t *testing.T) {
	b := memory.NewBackend("parley-test", nil, nil)
	cs := b.Config.(*memory.ConfigStore)
	contract.Run(t, contract.Factory{
		Name:    "memory",
		Backend: b,
		AppID:   "parley-test",
		SetConfig: func(_ context.Context, k, v string) error {
			cs.Set(map[string]string{k: v})
			return nil
		},
	})
}

// TestUpdateUnderContention: the optimistic read-modify-write helper keeps
// every increment when many writers race on one key.
func TestUpdateUnderContention(t *testing.T) {
	t.Parallel()
	s := memory.NewStateStore()
	ctx := context.Background()
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				err := infrastructure.Update(ctx, s, "counter", func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
					n, _ := strconv.Atoi(string(cur.Value))
					return []byte(strconv.Itoa(n + 1)), infrastructure.Put, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	it, _ := s.Get(ctx, "counter")
	if string(it.Value) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s, want %d", it.Value, workers*each)
	}
	// Remove deletes; Keep writes nothing.
	if err := infrastructure.Update(ctx, s, "counter", func(infrastructure.Item) ([]byte, infrastructure.Change, error) {
		return nil, infrastructure.Remove, nil
	}); err != nil {
		t.Fatal(err)
	}
	if it, _ := s.Get(ctx, "counter"); it.Found {
		t.Fatal("Remove left the key")
	}
}
