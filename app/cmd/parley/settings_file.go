package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

// followSettings makes live follow the backend's configuration store, or,
// where the profile has none, the settings file (re-read when it changes)
// over the defaults.
func followSettings(ctx context.Context, o options, b infrastructure.Backend, live *settings.Live, log *zap.Logger) (func(), error) {
	store := b.Config
	stopFile := func() {}
	if store == nil || o.settingsFile != "" {
		mem := memory.NewConfigStore(nil)
		if o.settingsFile != "" {
			kv, err := readSettingsFile(o.settingsFile)
			if err != nil {
				return nil, err
			}
			mem.Set(kv)
			stopFile = watchSettingsFile(ctx, o.settingsFile, mem, log)
		}
		store = mem
		log.Info("live settings from file and defaults", zap.String("file", o.settingsFile))
	} else {
		log.Info("live settings from the configuration store")
	}
	prefix := o.settingsPrefix
	if store != b.Config {
		prefix = "" // the file holds plain keys
	}
	stop, err := live.Follow(ctx, store, log, prefix)
	if err != nil {
		stopFile()
		return nil, err
	}
	return func() { stop(); stopFile() }, nil
}

// readSettingsFile reads "key: value" lines; '#' starts a comment. It is the
// flat subset of YAML that settings need.
func readSettingsFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read settings file: %w", err)
	}
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("settings file %s is over 1 MiB", path)
	}
	return parseSettings(data, path)
}

func parseSettings(data []byte, name string) (map[string]string, error) {
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want \"key: value\"", name, n)
		}
		kv[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return kv, nil
}

func watchSettingsFile(ctx context.Context, path string, mem *memory.ConfigStore, log *zap.Logger) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last time.Time
		if st, err := os.Stat(path); err == nil {
			last = st.ModTime()
		}
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			st, err := os.Stat(path)
			if err != nil || !st.ModTime().After(last) {
				continue
			}
			last = st.ModTime()
			kv, err := readSettingsFile(path)
			if err != nil {
				log.Warn("settings file not reloaded", zap.Error(err))
				continue
			}
			mem.Set(kv)
		}
	}()
	return func() { cancel(); <-done }
}
