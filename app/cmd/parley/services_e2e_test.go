package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	jsoniter "github.com/json-iterator/go"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	"github.com/parley-im/parley/tools/testkit"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startWordFilter runs the sample hook app on a free port.
func startWordFilter(t *testing.T) int {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(buildBinary(t, "wordfilter"), "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-words", "heck,darn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testkit.Eventually(t, 5*time.Second, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "wordfilter did not start")
	return port
}

// TestServicesThroughDapr: on each shared profile, a hook app refuses a
// banned word and the sender gets the reason; a service sends a message by
// invoking parley through its own sidecar and the user's devices get it;
// and, where the profile has a configuration store, a setting changed in
// the store takes effect within seconds.
func TestServicesThroughDapr(t *testing.T) {
	for _, profile := range []string{daprdtest.Redis, daprdtest.PostgresRabbitMQ, daprdtest.MySQLMQTT, daprdtest.JetStream} {
		t.Run(profile, func(t *testing.T) {
			requireMode(t, mode{name: "dapr-" + profile})
			hookID := daprdtest.UniqueName("wordfilter")
			parleyID := daprdtest.UniqueName("parley-svc")
			daprdtest.StartForTest(t, profile, daprdtest.WithAppID(hookID), daprdtest.WithAppPort(startWordFilter(t)))
			appPort := freePort(t)
			sc := daprdtest.StartForTest(t, profile, daprdtest.WithAppID(parleyID), daprdtest.WithAppPort(appPort))
			prefix := strings.ReplaceAll(daprdtest.UniqueName("cfg"), "-", "_") + "."
			n := startNode(t, mode{name: "external", args: []string{
				"-backend", "dapr", "-sidecar", "external", "-dapr-grpc", sc.GRPCAddr(), "-dapr-http", sc.HTTPAddr(),
				"-app-id", parleyID, "-app-port", fmt.Sprint(appPort), "-hook-app-id", hookID, "-settings-prefix", prefix,
			}})
			ctx := ctxT(t, 120*time.Second)
			bob := dial(t, n, "bob", "web")
			alice := dial(t, n, "alice", "web")

			// The hook refuses a banned word; the reason reaches the sender.
			_, err := alice.Send(ctx, "bob", "", "h1", "what the heck")
			var e *client.Error
			if !errors.As(err, &e) || e.Code != "rejected" || !strings.Contains(e.Message, "heck") {
				t.Fatalf("send with a banned word = %v, want code rejected naming the word", err)
			}
			ok, err := alice.Send(ctx, "bob", "", "h2", "what the hello")
			if err != nil {
				t.Fatalf("clean message refused: %v", err)
			}

			// A service with its own sidecar sends as alice through invocation.
			svc := daprdtest.StartForTest(t, profile, daprdtest.WithAppID(daprdtest.UniqueName("billing")))
			cl, err := dapr.New(ctx, dapr.Config{GRPCAddress: svc.GRPCAddr(), HTTPAddress: svc.HTTPAddr()})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			req := `{"from":"alice","to":"bob","cmid":"invoice-42","body":"your invoice is ready"}`
			out, err := cl.Backend().Invoker.Invoke(ctx, parleyID, "v1/send", []byte(req))
			if err != nil {
				t.Fatalf("invoke %s/v1/send: %v", parleyID, err)
			}
			var reply struct {
				Message *struct {
					ID  string `json:"id"`
					Seq uint64 `json:"seq"`
				} `json:"message"`
				Error *client.Error `json:"error"`
			}
			if err := jsoniter.Unmarshal(out, &reply); err != nil || reply.Message == nil {
				t.Fatalf("invoke reply %s: %v", out, err)
			}
			if reply.Message.Seq != ok.Seq+1 {
				t.Errorf("invoked send got seq %d, want %d", reply.Message.Seq, ok.Seq+1)
			}
			got := collect(t, bob, 2, 20*time.Second)
			if !strings.HasSuffix(got[1], ":your invoice is ready") {
				t.Errorf("bob received %v, want the invoked message last", got)
			}
			// A banned word through invocation gets the same refusal.
			out, err = cl.Backend().Invoker.Invoke(ctx, parleyID, "v1/send", []byte(`{"from":"alice","to":"bob","cmid":"x","body":"darn"}`))
			if err != nil || !strings.Contains(string(out), `"rejected"`) {
				t.Errorf("invoked send with a banned word = %s, %v", out, err)
			}

			set := daprdtest.ConfigSetter(t, profile)
			if set == nil {
				t.Logf("profile %s has no configuration store; live settings come from a file there", profile)
				return
			}
			if err := set(ctx, prefix+"parley.max_body_bytes", "10"); err != nil {
				t.Fatal(err)
			}
			cfgCtx, cancelCfg := context.WithTimeout(ctx, 15*time.Second)
			defer cancelCfg()
			i := 0
			if testkit.Until(cfgCtx, func() bool {
				i++
				_, err = alice.Send(ctx, "bob", "", fmt.Sprintf("cfg-%d", i), "twenty characters ok")
				return errors.As(err, &e) && e.Code == "body_too_large"
			}) != nil {
				t.Fatalf("max_body_bytes=10 in the store not in force after 15s: last send %v", err)
			}
		})
	}
}
