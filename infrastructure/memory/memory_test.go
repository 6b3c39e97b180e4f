package memory_test

import (
	"context"
	"testing"

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
