// Command assigner is a sample assignment app for customer-service
// conversations: a business app that parley invokes through Dapr when a
// customer writes to a shop and no agent answers that customer yet. It
// hands customers to the shop's agents in turn, skipping agents who are
// not online, and it can transfer a customer to another agent.
//
// Run it with its own daprd (app-id "assigner", --app-port matching
// -addr), and start parley with -assign-app-id assigner and the shops'
// accounts in -service-shops. It serves, through its daprd:
//
//	assign     parley asks for an agent: {"conv","shop","customer"} ->
//	           {"agent"}, or {} when none of the shop's agents is online
//	transfer   {"conv","to"}: hands the conversation to the agent "to" by
//	           invoking parley's v1/assign, and answers with parley's reply
//
// It learns who is online by invoking parley's v1/online with the shop's
// agents ({"users":[...]} -> {"online":[...]}); -online-check=false skips
// that and hands customers to every listed agent in turn.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	daprHTTP := "127.0.0.1:3500"
	if p := os.Getenv("DAPR_HTTP_PORT"); p != "" {
		daprHTTP = "127.0.0.1:" + p
	}
	if err := run(ctx, os.Args[1:], daprHTTP); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "assigner:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, daprHTTPDefault string) error {
	fs := flag.NewFlagSet("assigner", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:7071", "listen address; give its port to daprd as --app-port")
	agents := fs.String("agents", "shop=agent1,agent2", "each shop's agents, in turn order: shop=a,b;shop2=c")
	parleyID := fs.String("parley-app-id", "parley", "Dapr app-id of parley")
	daprHTTP := fs.String("dapr-http", daprHTTPDefault, "HTTP address of this app's daprd (default from DAPR_HTTP_PORT)")
	onlineCheck := fs.Bool("online-check", true, "hand customers only to agents parley reports online")
	readyFile := fs.String("ready-file", "", "write the listen address here once serving")
	if err := fs.Parse(args); err != nil {
		return err
	}
	shops, err := parseAgents(*agents)
	if err != nil {
		return err
	}
	a := &assigner{
		shops: shops, next: map[string]int{}, onlineCheck: *onlineCheck,
		parley: &parleyClient{base: "http://" + *daprHTTP + "/v1.0/invoke/" + url.PathEscape(*parleyID) + "/method/", http: &http.Client{Timeout: 5 * time.Second}},
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /assign", a.serveAssign)
	mux.HandleFunc("POST /transfer", a.serveTransfer)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	if *readyFile != "" {
		_ = os.WriteFile(*readyFile, []byte(ln.Addr().String()), 0o644)
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// parseAgents reads "shop=a,b;shop2=c".
func parseAgents(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, part := range strings.Split(s, ";") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		shop, list, ok := strings.Cut(part, "=")
		shop = strings.TrimSpace(shop)
		if !ok || shop == "" {
			return nil, fmt.Errorf("-agents: %q is not shop=agent,agent", part)
		}
		for _, a := range strings.Split(list, ",") {
			if a = strings.TrimSpace(a); a != "" && !slices.Contains(out[shop], a) {
				out[shop] = append(out[shop], a)
			}
		}
		if len(out[shop]) == 0 {
			return nil, fmt.Errorf("-agents: shop %q has no agents", shop)
		}
	}
	return out, nil
}

// assigner hands each shop's customers to its agents in turn. Safe for
// concurrent use.
type assigner struct {
	shops       map[string][]string
	onlineCheck bool
	parley      *parleyClient

	mu   sync.Mutex
	next map[string]int // per shop: where the next turn starts in its list
}

// assignRequest and assignReply mirror parley's chat.AssignRequest and
// chat.AssignReply.
type assignRequest struct {
	Conv     string `json:"conv"`
	Shop     string `json:"shop"`
	Customer string `json:"customer"`
}

type assignReply struct {
	Agent string `json:"agent,omitempty"`
}

func (a *assigner) serveAssign(w http.ResponseWriter, r *http.Request) {
	var req assignRequest
	if !readJSON(w, r, &req) {
		return
	}
	agents := a.shops[req.Shop]
	online := agents
	if a.onlineCheck && len(agents) > 0 {
		var err error
		if online, err = a.parley.online(r.Context(), agents); err != nil {
			// parley asks again later; an agent who is offline is no answer.
			http.Error(w, "cannot tell which agents are online: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	writeJSON(w, http.StatusOK, assignReply{Agent: a.pick(req.Shop, online)})
}

// pick returns the shop's next agent in turn among those online, or "".
func (a *assigner) pick(shop string, online []string) string {
	agents := a.shops[shop]
	a.mu.Lock()
	defer a.mu.Unlock()
	start := a.next[shop]
	for i := range agents {
		j := (start + i) % len(agents)
		if slices.Contains(online, agents[j]) {
			a.next[shop] = j + 1
			return agents[j]
		}
	}
	return ""
}

// transferRequest asks to hand conversation Conv to agent To.
type transferRequest struct {
	Conv string `json:"conv"`
	To   string `json:"to"`
	Cmid string `json:"cmid,omitempty"`
}

func (a *assigner) serveTransfer(w http.ResponseWriter, r *http.Request) {
	var req transferRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Conv == "" || req.To == "" {
		http.Error(w, "want conv and to", http.StatusBadRequest)
		return
	}
	out, err := a.parley.assign(r.Context(), req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// parleyClient invokes parley's methods through this app's daprd.
type parleyClient struct {
	base string
	http *http.Client
}

func (p *parleyClient) call(ctx context.Context, method string, in any) ([]byte, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+method, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke parley %s: %w", method, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("invoke parley %s: %w", method, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("invoke parley %s: status %d: %.200s", method, resp.StatusCode, out)
	}
	return out, nil
}

// online returns those of users that parley reports connected.
func (p *parleyClient) online(ctx context.Context, users []string) ([]string, error) {
	out, err := p.call(ctx, "v1/online", map[string][]string{"users": users})
	if err != nil {
		return nil, err
	}
	var reply struct {
		Online []string `json:"online"`
	}
	if err := json.Unmarshal(out, &reply); err != nil {
		return nil, fmt.Errorf("parley v1/online answered %.200q: %w", out, err)
	}
	return reply.Online, nil
}

// assign asks parley to hand a conversation to an agent, and returns
// parley's reply as it is.
func (p *parleyClient) assign(ctx context.Context, t transferRequest) ([]byte, error) {
	return p.call(ctx, "v1/assign", map[string]string{"conv": t.Conv, "agent": t.To, "cmid": t.Cmid})
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil || json.Unmarshal(data, v) != nil {
		http.Error(w, "want a JSON body of the documented shape", http.StatusBadRequest)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
