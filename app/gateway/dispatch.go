package gateway

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// handle decodes one data message from the device and answers it.
func (c *conn) handle(ctx context.Context, binary bool, data []byte) {
	if binary != c.codec.binary() {
		c.srv.metrics.FrameIn("other")
		c.sendCode("", CodeBadFrame, "wrong frame kind: text frames carry JSON, binary frames need subprotocol "+SubprotocolProto)
		return
	}
	f := getFrame()
	kept := false // a send's goroutine owns f
	defer func() {
		if !kept {
			putFrame(f)
		}
	}()
	if err := c.codec.decode(data, f); err != nil {
		// Undecodable: no type to count it by.
		c.srv.metrics.FrameIn("other")
		code := CodeBadFrame
		if errors.Is(err, errFrameNotUTF8) {
			code = CodeInvalidUTF8
		}
		c.sendCode("", code, err.Error())
		return
	}
	c.srv.metrics.FrameIn(f.Type)
	if len(f.Id) > 64 {
		c.sendCode("", CodeBadFrame, "id longer than 64 characters")
		return
	}
	switch f.Type {
	case "send":
		kept = true
		c.startSend(ctx, f)
	case "recv":
		c.acked(ctx, domain.ConversationID(f.Conv), f.Seq)
	case "sync":
		if f.Conv == "" {
			c.sendCode(f.Id, CodeInvalidConv, `sync needs "conv"`)
			return
		}
		page, err := c.srv.history.Handle(ctx, chat.History{Reader: c.user, Conv: f.Conv, After: f.Seq, Limit: int(f.Limit)})
		if err != nil {
			c.sendErr(f.Id, err)
			return
		}
		// Before the answer is queued: a push from here on that it covers
		// is not sent again. Only what the answer holds counts, not the
		// seq the client claims to have.
		if n := len(page.Messages); n > 0 {
			c.noteSynced(page.Conv, page.Messages[n-1].Seq)
		}
		c.send(&pb.Frame{Type: "sync_result", Id: f.Id, Conv: string(page.Conv), Messages: toPBList(page.Messages), More: page.More})
	case "read":
		if f.Conv == "" {
			c.sendCode(f.Id, CodeInvalidConv, `read needs "conv"`)
			return
		}
		seq, err := c.srv.markRead.Handle(ctx, chat.MarkRead{Reader: c.user, Conv: f.Conv, Seq: f.Seq})
		if err != nil {
			c.sendErr(f.Id, err)
			return
		}
		c.send(&pb.Frame{Type: "read", Id: f.Id, Conv: f.Conv, Seq: seq})
	case "convs":
		views, err := c.srv.list.Handle(ctx, c.user)
		if err != nil {
			c.sendErr(f.Id, err)
			return
		}
		c.send(&pb.Frame{Type: "conversations", Id: f.Id, Conversations: toPBConvs(views)})
	case "ping":
		c.send(&pb.Frame{Type: "pong", Id: f.Id})
	case "":
		c.sendCode(f.Id, CodeBadFrame, `frame has no "type"`)
	default:
		if !c.handleGroupFrame(ctx, f) {
			c.sendCode(f.Id, CodeUnknownType, "unknown frame type; see the protocol section of the README")
		}
	}
}

// acked stops the retransmission of a pushed message the device
// acknowledged and tells the sender's devices it was delivered. An
// acknowledgement that is not of a pending push and at or below what this
// device acknowledged before (a repeat) costs nothing further.
func (c *conn) acked(ctx context.Context, conv domain.ConversationID, seq uint64) {
	p := c.untrack(conv, seq)
	prev, seen := c.ackedTo[conv]
	if p == nil && seen && seq <= prev {
		return
	}
	if !seen && len(c.ackedTo) >= maxAckedConvs {
		// Bounded: forgetting only lets a repeat through to the use case.
		clear(c.ackedTo)
	}
	if c.ackedTo == nil {
		c.ackedTo = make(map[domain.ConversationID]uint64)
	}
	c.ackedTo[conv] = max(prev, seq)
	cmd := chat.ConfirmDelivery{Reader: c.user, Conv: conv, Seq: seq}
	if p != nil {
		cmd.Sender = p.env.Msg.Sender
		c.srv.metrics.MessageDelivered()
	}
	if err := c.srv.delivered.Handle(ctx, cmd); err != nil {
		c.logger().Debug("delivery not confirmed", zap.String("conv", string(conv)), zap.Uint64("seq", seq), zap.Error(err))
	}
}

// maxAckedConvs bounds the conversations a connection remembers acks of.
const maxAckedConvs = 1024

// handleSend stores a send and answers it, after the answer to the
// connection's previous send (prev, nil for none) is queued; see sendPipe.
func (c *conn) handleSend(ctx context.Context, f *pb.Frame, turn *store.Turn, prev <-chan struct{}) {
	if err := checkMentions(f.Mentions); err != nil {
		awaitTurn(prev)
		c.sendErr(f.Id, err)
		return
	}
	start := time.Now()
	ctx, span := tracer.Start(ctx, "send", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	res, err := c.srv.send.Handle(ctx, chat.SendMessage{
		Sender: c.user, Conv: f.Conv, To: f.To, ClientMsgID: f.Cmid, ContentType: f.Ctype, Body: f.Body, Origin: c.id,
		ReplyTo: f.ReplyTo, Mentions: f.Mentions, Route: chat.Route{Unit: f.Unit, Epoch: f.Epoch},
		AcceptPending: true, Turn: turn,
	})
	turn.Placed()
	traceSend(span, &res, err)
	awaitTurn(prev)
	if err != nil {
		c.logger().Info("send refused", zap.String("req", f.Id), zap.String("cmid", f.Cmid), zap.Error(err))
		c.sendErr(f.Id, err)
		if errors.Is(err, chat.ErrRateLimited) {
			c.srv.metrics.RateLimited(metrics.LimitSend)
			c.srv.rateLimited(ctx, c.user)
		}
		return
	}
	if !res.Duplicate && !res.Pending {
		c.srv.metrics.MessageStored()
	}
	m := &res.Message
	c.srv.logSend(m, c.id, res.Duplicate, time.Since(start), traceFields(ctx)...)
	ack := getMsgFrame()
	pm := ack.Msg
	pm.Id, pm.Conv, pm.Seq, pm.Cmid, pm.Ts = m.ID, string(m.Conv), m.Seq, m.ClientMsgID, m.ServerMs
	ack.Type, ack.Id = "ack", f.Id
	ack.Unit, ack.Epoch, ack.Pending = res.Route.Unit, res.Route.Epoch, res.Pending
	c.send(ack)
	putMsgFrame(ack)
	c.srv.metrics.SendAcked(time.Since(start))
}

// awaitTurn waits until ch, when not nil, is closed.
func awaitTurn(ch <-chan struct{}) {
	if ch != nil {
		<-ch
	}
}

func (c *conn) sendErr(id string, err error) {
	ae := toAPIError(err)
	if ae.Code == CodeInternal || ae.Code == CodeUnavailable {
		c.logger().Warn("request failed", zap.String("req", id), zap.Error(err))
	}
	c.srv.metrics.Error(ae.Code)
	c.send(&pb.Frame{Type: "error", Id: id, Code: ae.Code, Message: ae.Message, Retryable: ae.Retryable, Until: ae.Until})
}

func (c *conn) sendCode(id, code, msg string) {
	c.srv.metrics.Error(code)
	c.send(&pb.Frame{Type: "error", Id: id, Code: code, Message: msg})
}

func toPBConvs(views []chat.ConversationView) []*pb.Conversation {
	out := make([]*pb.Conversation, len(views))
	for i, v := range views {
		members := make([]string, len(v.Conversation.Members))
		for j, m := range v.Conversation.Members {
			members[j] = string(m)
		}
		pc := &pb.Conversation{Id: string(v.Conversation.ID), Kind: string(v.Conversation.Kind), Members: members,
			LastSeq: v.LastSeq, ReadSeq: v.ReadSeq, Unread: v.Unread, PeerReadSeq: v.PeerReadSeq, Mentioned: v.Mentioned}
		if v.Last != nil {
			pc.Last = toPB(v.Last)
		}
		pc.Group = toPBGroup(v.Group)
		out[i] = pc
	}
	return out
}
