// Package metrics holds parley's Prometheus metrics: one struct of handles
// built once, with every label value resolved at construction, so that the
// hot paths (a send, a push, a sidecar call) touch atomics only, never a map
// or a label-vector lookup.
//
// A nil *Metrics is valid and records nothing: use cases, the gateway and
// their tests need no wiring. Only app/cmd builds a real one and serves it
// (see Handler).
package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every parley metric.
const namespace = "parley"

// DropReason says why a message did not reach a device's socket. The
// message stays stored: the device gets it by syncing.
type DropReason uint8

// The drop reasons, the values of parley_messages_dropped_total{reason}.
const (
	// DropQueueFull: the device's write queue was full; it is cut.
	DropQueueFull DropReason = iota
	// DropPendingFull: the device had too many unacknowledged messages.
	DropPendingFull
	// DropAckTimeout: the device never acknowledged after the last try.
	DropAckTimeout
	// DropEncode: the message could not be encoded for the device.
	DropEncode
	// DropConnClosed: the connection closed before the push.
	DropConnClosed
	// DropBadEnvelope: a delivery from another node could not be decoded.
	DropBadEnvelope
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	"queue_full", "pending_full", "ack_timeout", "encode_failed", "conn_closed", "bad_envelope",
}

// String returns the label value of r.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}

// SlowReason says why a device was cut as a slow consumer.
type SlowReason uint8

// The slow-consumer reasons, the values of
// parley_slow_consumer_cuts_total{reason}.
const (
	// SlowQueueFull: its write queue filled.
	SlowQueueFull SlowReason = iota
	// SlowPendingFull: too many pushes waited for its acknowledgement.
	SlowPendingFull
	// SlowWriteFailed: a write to its socket failed or timed out.
	SlowWriteFailed
	numSlowReasons
)

var slowReasonNames = [numSlowReasons]string{"queue_full", "pending_full", "write_failed"}

// Limit names a rate limit.
type Limit uint8

// The rate limits, the values of parley_rate_limited_total{limit}.
const (
	// LimitSend: a user sent faster than the send rate.
	LimitSend Limit = iota
	// LimitConnect: a user or address connected too often.
	LimitConnect
	// LimitLogin: logins failed too often.
	LimitLogin
	// LimitConnections: a user holds the most connections allowed.
	LimitConnections
	numLimits
)

var limitNames = [numLimits]string{"send", "connect", "login", "connections"}

// BanSubject says what a ban was on.
type BanSubject uint8

// The ban subjects, the values of parley_ban_hits_total{subject}.
const (
	BanUser BanSubject = iota
	BanAddress
	numBanSubjects
)

var banSubjectNames = [numBanSubjects]string{"user", "address"}

// closeCodes are the WebSocket close codes counted by value; any other is
// counted as "other". 0 is a connection closed with no close frame (read
// error, client gone).
var closeCodes = []int{0, 1000, 1001, 1005, 1006, 1008, 1009, 1011, 1013, 4008, 4009, 4010, 4011, 4012}

// frameInTypes and frameOutTypes are the protocol's frame types; any other
// is counted as "other".
var (
	frameInTypes  = []string{"send", "recv", "sync", "read", "convs", "ping", "group_create", "group", "recall", "edit", "typing", "other"}
	frameOutTypes = []string{"hello", "ack", "msg", "error", "sync_result", "read", "conversations", "pong",
		"delivered", "typing", "read_by", "seen", "join_requested", "join_rejected", "group_result", "unassigned", "other"}
)

// errorCodes are the protocol error codes of the gateway (its Code*
// constants); any other is counted as "other".
var errorCodes = []string{
	"bad_frame", "unknown_type", "unauthorized", "invalid_user", "invalid_conversation", "invalid_cmid",
	"empty_body", "body_too_large", "unknown_content_type", "invalid_json_body", "invalid_utf8",
	"send_to_self", "not_member", "invalid_limit", "rate_limited", "unavailable", "not_found",
	"method_not_allowed", "request_too_large", "internal", "rejected", "origin_not_allowed", "forbidden",
	"muted", "group_dissolved", "cmid_reused", "recall_window", "edit_window", "recalled", "not_editable",
	"not_recallable", "invalid_name", "invalid_notice", "invalid_ext", "too_many_members", "unknown_role",
	"unknown_join_policy", "invite_only", "already_member", "owner_cannot_leave", "invalid_mute_time",
	"invalid_reply", "invalid_mention", "invalid_typing", "no_change", "unknown_group_op", "invalid_note",
	"banned", "other",
}

// SidecarOps are the sidecar operations, the values of
// parley_sidecar_calls_total{op}; the dapr adapter reports its calls with
// these names. Any other is counted as "other".
var SidecarOps = []string{
	"state_get", "state_bulk_get", "state_set", "state_delete", "state_transaction",
	"publish", "bulk_publish", "subscribe", "invoke", "configuration_get", "configuration_subscribe",
	"metadata", "other",
}

// SidecarOutcomes are the outcomes of a sidecar call, the values of
// parley_sidecar_calls_total{outcome}. Any other is counted as "error".
var SidecarOutcomes = []string{"ok", "conflict", "not_found", "invalid", "unavailable", "canceled", "error"}

// batchOps are the coalesced state calls (infrastructure/dapr batch.go).
var batchOps = []string{"get", "set", "transact", "insert", "other"}

// Buckets, in seconds unless said otherwise.
var (
	// sendAckBuckets spans a send in memory (~50 µs) to one stuck behind a
	// slow store.
	sendAckBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	// storeDeliverBuckets starts at a millisecond: across nodes the store
	// time is the message's millisecond timestamp.
	storeDeliverBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// sidecarBuckets spans a daprd round trip on loopback (~100 µs) to a
	// backend timeout.
	sidecarBuckets  = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	batchBuckets    = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}
	queueFillBucket = []float64{.1, .25, .5, .75, .9, 1}
)

// Metrics is the set of parley's metrics. Build it with New. A nil *Metrics
// records nothing; every method is safe for concurrent use.
type Metrics struct {
	connsNow    prometheus.Gauge
	connsOpened prometheus.Counter
	connsClosed []prometheus.Counter // by closeCodes index, then "other"

	framesIn  []prometheus.Counter // by frameInTypes index
	framesOut []prometheus.Counter // by frameOutTypes index

	stored        prometheus.Counter
	pushed        prometheus.Counter
	delivered     prometheus.Counter
	retransmitted prometheus.Counter
	dropped       [numDropReasons]prometheus.Counter

	sendAck      prometheus.Histogram
	storeDeliver prometheus.Histogram

	sidecarCalls   [][]prometheus.Counter // [op][outcome]
	sidecarSeconds []prometheus.Histogram // [op]
	batchSize      []prometheus.Histogram // [batch op]

	queueFill prometheus.Histogram
	slowCuts  [numSlowReasons]prometheus.Counter

	presenceWrites [2]prometheus.Counter // ok, error
	leaseRenewals  [2]prometheus.Counter
	rateLimited    [numLimits]prometheus.Counter
	banHits        [numBanSubjects]prometheus.Counter
	// errors is read-only once built: errors are not the hot path, and
	// the codes are many.
	errors  map[string]prometheus.Counter
	reloads [2]prometheus.Counter
}

// NewRegistry returns a registry with the Go runtime and process
// collectors, to which New adds parley's metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// New builds every metric and registers it with reg. It fails if reg
// already holds a metric of the same name (New called twice on one
// registry).
func New(reg *prometheus.Registry) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: nil registry")
	}
	m := &Metrics{}
	var cs []prometheus.Collector
	add := func(c prometheus.Collector) { cs = append(cs, c) }

	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
		add(c)
		return c
	}
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, []string{label})
		add(v)
		return v
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
		add(h)
		return h
	}
	// resolve builds one child per label value, once.
	resolve := func(v *prometheus.CounterVec, values []string) []prometheus.Counter {
		out := make([]prometheus.Counter, len(values))
		for i, val := range values {
			out[i] = v.WithLabelValues(val)
		}
		return out
	}
	outcomes := func(v *prometheus.CounterVec) [2]prometheus.Counter {
		return [2]prometheus.Counter{v.WithLabelValues("ok"), v.WithLabelValues("error")}
	}

	m.connsNow = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "connections",
		Help: "WebSocket connections open now."})
	add(m.connsNow)
	m.connsOpened = counter("connections_opened_total", "WebSocket connections accepted.")
	codes := make([]string, 0, len(closeCodes)+1)
	for _, c := range closeCodes {
		codes = append(codes, strconv.Itoa(c))
	}
	m.connsClosed = resolve(counterVec("connections_closed_total",
		"WebSocket connections closed, by close code (0: no close frame).", "code"), append(codes, "other"))

	m.framesIn = resolve(counterVec("frames_received_total", "Frames received from devices, by type.", "type"), frameInTypes)
	m.framesOut = resolve(counterVec("frames_sent_total", "Frames queued to devices, by type.", "type"), frameOutTypes)

	m.stored = counter("messages_stored_total", "Messages stored (appended to a conversation); duplicates of a cmid excluded.")
	m.pushed = counter("messages_pushed_total", "Messages queued to a device's connection, first tries only.")
	m.delivered = counter("messages_delivered_total", "Pushed messages a device acknowledged with a recv frame.")
	m.retransmitted = counter("messages_retransmitted_total", "Pushes sent again because no acknowledgement came in time.")
	dropped := counterVec("messages_dropped_total", "Pushes abandoned, by reason; the device gets the message by syncing.", "reason")
	for r := range numDropReasons {
		m.dropped[r] = dropped.WithLabelValues(dropReasonNames[r])
	}

	m.sendAck = histogram("send_ack_seconds", "Time from a send frame read to its ack frame queued.", sendAckBuckets)
	m.storeDeliver = histogram("store_deliver_seconds", "Time from a message stored to its push queued to a receiving device.", storeDeliverBuckets)

	calls := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sidecar_calls_total",
		Help: "Calls to the Dapr sidecar, by operation and outcome."}, []string{"op", "outcome"})
	add(calls)
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "sidecar_call_seconds",
		Help: "Duration of calls to the Dapr sidecar, by operation.", Buckets: sidecarBuckets}, []string{"op"})
	add(seconds)
	m.sidecarCalls = make([][]prometheus.Counter, len(SidecarOps))
	m.sidecarSeconds = make([]prometheus.Histogram, len(SidecarOps))
	for i, op := range SidecarOps {
		m.sidecarCalls[i] = make([]prometheus.Counter, len(SidecarOutcomes))
		for j, out := range SidecarOutcomes {
			m.sidecarCalls[i][j] = calls.WithLabelValues(op, out)
		}
		m.sidecarSeconds[i] = seconds.WithLabelValues(op).(prometheus.Histogram)
	}
	batch := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "sidecar_batch_size",
		Help: "State calls carried by one coalesced sidecar call (1: it went alone), by kind.", Buckets: batchBuckets}, []string{"op"})
	add(batch)
	m.batchSize = make([]prometheus.Histogram, len(batchOps))
	for i, op := range batchOps {
		m.batchSize[i] = batch.WithLabelValues(op).(prometheus.Histogram)
	}

	m.queueFill = histogram("write_queue_fill_ratio", "How full a device's write queue was when a frame was queued (1: full).", queueFillBucket)
	slow := counterVec("slow_consumer_cuts_total", "Devices disconnected for not reading fast enough, by reason.", "reason")
	for r := range numSlowReasons {
		m.slowCuts[r] = slow.WithLabelValues(slowReasonNames[r])
	}

	m.presenceWrites = outcomes(counterVec("presence_writes_total", "Presence entries written (connect, disconnect), by outcome.", "outcome"))
	m.leaseRenewals = outcomes(counterVec("lease_renewals_total", "Renewals of this node's presence lease, by outcome.", "outcome"))
	limited := counterVec("rate_limited_total", "Requests refused by a rate limit, by limit.", "limit")
	for l := range numLimits {
		m.rateLimited[l] = limited.WithLabelValues(limitNames[l])
	}
	bans := counterVec("ban_hits_total", "Requests refused because their user or address is banned.", "subject")
	for s := range numBanSubjects {
		m.banHits[s] = bans.WithLabelValues(banSubjectNames[s])
	}
	errs := counterVec("errors_total", "Errors answered to clients, by protocol code.", "code")
	m.errors = make(map[string]prometheus.Counter, len(errorCodes))
	for _, code := range errorCodes {
		m.errors[code] = errs.WithLabelValues(code)
	}
	m.reloads = outcomes(counterVec("settings_reloads_total",
		"Live-setting updates applied (ok) or with values refused (error).", "outcome"))

	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// Handler serves reg in the Prometheus text format, for /metrics.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// Names lists the names of the metric families New registers, sorted, as
// Prometheus exposes them (a histogram as one name, without _bucket).
func Names() []string {
	reg := prometheus.NewRegistry()
	if _, err := New(reg); err != nil {
		panic(err) // a fresh registry cannot hold a duplicate
	}
	fams, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	names := make([]string, len(fams))
	for i, f := range fams {
		names[i] = f.GetName()
	}
	slices.Sort(names)
	return names
}

// ConnOpened counts a connection accepted.
func (m *Metrics) ConnOpened() {
	if m == nil {
		return
	}
	m.connsOpened.Inc()
	m.connsNow.Inc()
}

// ConnClosed counts a connection closed with the close code sent or
// received (0 when there was no close frame).
func (m *Metrics) ConnClosed(code int) {
	if m == nil {
		return
	}
	m.connsNow.Dec()
	i := len(closeCodes) // "other"
	for j, c := range closeCodes {
		if c == code {
			i = j
			break
		}
	}
	m.connsClosed[i].Inc()
}

// frameInIndex maps a client frame type to its index in frameInTypes.
func frameInIndex(typ string) int {
	switch typ {
	case "send":
		return 0
	case "recv":
		return 1
	case "sync":
		return 2
	case "read":
		return 3
	case "convs":
		return 4
	case "ping":
		return 5
	case "group_create":
		return 6
	case "group":
		return 7
	case "recall":
		return 8
	case "edit":
		return 9
	case "typing":
		return 10
	}
	return 11
}

// frameOutIndex maps a server frame type to its index in frameOutTypes.
func frameOutIndex(typ string) int {
	switch typ {
	case "hello":
		return 0
	case "ack":
		return 1
	case "msg":
		return 2
	case "error":
		return 3
	case "sync_result":
		return 4
	case "read":
		return 5
	case "conversations":
		return 6
	case "pong":
		return 7
	case "delivered":
		return 8
	case "typing":
		return 9
	case "read_by":
		return 10
	case "seen":
		return 11
	case "join_requested":
		return 12
	case "join_rejected":
		return 13
	case "group_result":
		return 14
	case "unassigned":
		return 15
	}
	return 16
}

// FrameIn counts a frame read from a device, by its type.
func (m *Metrics) FrameIn(typ string) {
	if m == nil {
		return
	}
	m.framesIn[frameInIndex(typ)].Inc()
}

// FrameOut counts a frame queued to a device, by its type.
func (m *Metrics) FrameOut(typ string) {
	if m == nil {
		return
	}
	m.framesOut[frameOutIndex(typ)].Inc()
}

// MessageStored counts a message appended to a conversation.
func (m *Metrics) MessageStored() {
	if m == nil {
		return
	}
	m.stored.Inc()
}

// MessagePushed counts a message queued to a device for the first time,
// and how long after it was stored (zero or less: not observed, as for a
// store time unknown).
func (m *Metrics) MessagePushed(sinceStored time.Duration) {
	if m == nil {
		return
	}
	m.pushed.Inc()
	if sinceStored > 0 {
		m.storeDeliver.Observe(sinceStored.Seconds())
	}
}

// MessageDelivered counts a push that a device acknowledged.
func (m *Metrics) MessageDelivered() {
	if m == nil {
		return
	}
	m.delivered.Inc()
}

// MessageRetransmitted counts a push sent again.
func (m *Metrics) MessageRetransmitted() {
	if m == nil {
		return
	}
	m.retransmitted.Inc()
}

// MessageDropped counts a push abandoned for reason r.
func (m *Metrics) MessageDropped(r DropReason) {
	if m == nil || r >= numDropReasons {
		return
	}
	m.dropped[r].Inc()
}

// SendAcked observes the time from a send frame read to its ack queued.
func (m *Metrics) SendAcked(d time.Duration) {
	if m == nil {
		return
	}
	m.sendAck.Observe(d.Seconds())
}

func sidecarOpIndex(op string) int {
	switch op {
	case "state_get":
		return 0
	case "state_bulk_get":
		return 1
	case "state_set":
		return 2
	case "state_delete":
		return 3
	case "state_transaction":
		return 4
	case "publish":
		return 5
	case "bulk_publish":
		return 6
	case "subscribe":
		return 7
	case "invoke":
		return 8
	case "configuration_get":
		return 9
	case "configuration_subscribe":
		return 10
	case "metadata":
		return 11
	}
	return 12
}

func sidecarOutcomeIndex(outcome string) int {
	switch outcome {
	case "ok":
		return 0
	case "conflict":
		return 1
	case "not_found":
		return 2
	case "invalid":
		return 3
	case "unavailable":
		return 4
	case "canceled":
		return 5
	}
	return 6
}

// SidecarCall records one call to the sidecar: op is one of SidecarOps,
// outcome one of SidecarOutcomes. It makes *Metrics an observer of the dapr
// adapter (infrastructure/dapr Config.Observer).
func (m *Metrics) SidecarCall(op, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	i := sidecarOpIndex(op)
	m.sidecarCalls[i][sidecarOutcomeIndex(outcome)].Inc()
	m.sidecarSeconds[i].Observe(d.Seconds())
}

// SidecarBatch records how many state calls of kind op ("get", "set",
// "transact", "insert": batch inserts) went out as one sidecar call.
func (m *Metrics) SidecarBatch(op string, size int) {
	if m == nil {
		return
	}
	i := 4
	switch op {
	case "get":
		i = 0
	case "set":
		i = 1
	case "transact":
		i = 2
	case "insert":
		i = 3
	}
	m.batchSize[i].Observe(float64(size))
}

// WriteQueueFill observes how full a write queue is: queued of capacity
// frames (or bytes). A capacity of zero or less is not observed.
func (m *Metrics) WriteQueueFill(queued, capacity int) {
	if m == nil || capacity <= 0 {
		return
	}
	m.queueFill.Observe(float64(queued) / float64(capacity))
}

// SlowConsumerCut counts a device cut for not reading fast enough.
func (m *Metrics) SlowConsumerCut(r SlowReason) {
	if m == nil || r >= numSlowReasons {
		return
	}
	m.slowCuts[r].Inc()
}

func outcomeIndex(err error) int {
	if err != nil {
		return 1
	}
	return 0
}

// PresenceWrite counts a presence entry written, failed when err is not nil.
func (m *Metrics) PresenceWrite(err error) {
	if m == nil {
		return
	}
	m.presenceWrites[outcomeIndex(err)].Inc()
}

// LeaseRenewal counts a renewal of the node's lease, failed when err is
// not nil.
func (m *Metrics) LeaseRenewal(err error) {
	if m == nil {
		return
	}
	m.leaseRenewals[outcomeIndex(err)].Inc()
}

// RateLimited counts a request refused by limit l.
func (m *Metrics) RateLimited(l Limit) {
	if m == nil || l >= numLimits {
		return
	}
	m.rateLimited[l].Inc()
}

// BanHit counts a request refused because its subject is banned.
func (m *Metrics) BanHit(s BanSubject) {
	if m == nil || s >= numBanSubjects {
		return
	}
	m.banHits[s].Inc()
}

// Error counts an error answered to a client, by its protocol code (the
// gateway's Code* constants), over WebSocket or HTTP.
func (m *Metrics) Error(code string) {
	if m == nil {
		return
	}
	c, ok := m.errors[code]
	if !ok {
		c = m.errors["other"]
	}
	c.Inc()
}

// SettingsReloaded counts a live-setting update; refused is how many of
// its values were refused (Live.Update's errors).
func (m *Metrics) SettingsReloaded(refused int) {
	if m == nil {
		return
	}
	if refused > 0 {
		m.reloads[1].Inc()
		return
	}
	m.reloads[0].Inc()
}
