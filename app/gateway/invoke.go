package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// InvokeSendMethod is the method other services invoke, through their own
// Dapr sidecar, to send a message as a user or a system account.
const InvokeSendMethod = "v1/send"

// invokeSend is the body of an InvokeSendMethod call. From is any valid user
// id: the service is trusted, as Dapr access control decides who may call.
type invokeSend struct {
	From     string   `json:"from"`
	To       string   `json:"to"`
	Conv     string   `json:"conv"`
	Cmid     string   `json:"cmid"`
	Ctype    string   `json:"ctype"`
	Body     string   `json:"body"`
	ReplyTo  uint64   `json:"reply_to"`
	Mentions []string `json:"mentions"`
}

// invokeReply carries the stored message, or the same error a client gets.
type invokeReply struct {
	Message   *pb.Message `json:"message,omitempty"`
	Duplicate bool        `json:"duplicate,omitempty"`
	Error     *errorReply `json:"error,omitempty"`
}

// ServeInvocations registers the methods other services call on parley.
func (s *Server) ServeInvocations(inv infrastructure.Invoker) error {
	if err := inv.Serve(InvokeOnlineMethod, s.invokeOnline); err != nil {
		return err
	}
	if s.service != nil {
		if err := inv.Serve(InvokeAssignMethod, s.invokeAssign); err != nil {
			return err
		}
	}
	if s.groups != nil {
		if err := inv.Serve(InvokeGroupsMethod, s.invokeGroupCreate); err != nil {
			return err
		}
		if err := inv.Serve(InvokeGroupChangeMethod, s.invokeGroupChange); err != nil {
			return err
		}
	}
	if s.guard != nil {
		for _, m := range []struct {
			name string
			fn   func(context.Context, []byte) ([]byte, error)
		}{{InvokeBanMethod, s.invokeBan}, {InvokeUnbanMethod, s.invokeUnban}, {InvokeBansMethod, s.invokeBans}} {
			if err := inv.Serve(m.name, m.fn); err != nil {
				return err
			}
		}
	}
	return inv.Serve(InvokeSendMethod, s.invokeSend)
}

// InvokeAssignMethod is the method an assignment service invokes to hand a
// customer-service conversation to an agent: the first assignment or a
// transfer.
const InvokeAssignMethod = "v1/assign"

// InvokeOnlineMethod is the method a service invokes to learn which of
// some users have a device connected to any node.
const InvokeOnlineMethod = "v1/online"

// invokeAssign is the body of an InvokeAssignMethod call. Actor empty means
// the shop: the service acts for it.
type invokeAssign struct {
	Conv  string `json:"conv"`
	Agent string `json:"agent"`
	Actor string `json:"actor"`
	Cmid  string `json:"cmid"`
}

// invokeAssignReply carries the conversation after the assignment and its
// event (none when the agent was already assigned), or the error.
type invokeAssignReply struct {
	Conv  *domain.ServiceConversation `json:"conv,omitempty"`
	Event *pb.Message                 `json:"event,omitempty"`
	Error *errorReply                 `json:"error,omitempty"`
}

func (s *Server) invokeAssign(ctx context.Context, data []byte) ([]byte, error) {
	var req invokeAssign
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: body is not JSON of the documented shape: %s", infrastructure.ErrInvalidArgument, trimErr(err))
	}
	var reply invokeAssignReply
	res, err := s.service.Assign(ctx, chat.AssignAgent{Actor: domain.UserID(req.Actor), Conv: req.Conv, Agent: domain.UserID(req.Agent), ClientMsgID: req.Cmid})
	if errors.Is(err, domain.ErrNoChange) {
		err = nil
	}
	if err == nil {
		reply.Conv = &res.Conversation
		if res.Event != nil {
			reply.Event = toPB(res.Event)
		}
	} else {
		reply.Error = toErrorReply(toAPIError(err))
	}
	return json.Marshal(reply)
}

func (s *Server) invokeOnline(ctx context.Context, data []byte) ([]byte, error) {
	var req struct {
		Users []domain.UserID `json:"users"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: body is not JSON of the documented shape: %s", infrastructure.ErrInvalidArgument, trimErr(err))
	}
	all, err := s.online.Handle(ctx, chat.ListOnlineUsers{})
	if err != nil {
		return nil, err
	}
	online := []domain.UserID{}
	for _, u := range req.Users {
		if slices.Contains(all, u) {
			online = append(online, u)
		}
	}
	return json.Marshal(map[string][]domain.UserID{"online": online})
}

func (s *Server) invokeSend(ctx context.Context, data []byte) ([]byte, error) {
	var req invokeSend
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: body is not JSON of the documented shape: %s", infrastructure.ErrInvalidArgument, trimErr(err))
	}
	var reply invokeReply
	from, err := domain.ParseUserID(req.From)
	if err == nil {
		err = checkMentions(req.Mentions)
	}
	if err == nil {
		start := time.Now()
		var res chat.SendResult
		res, err = s.send.Handle(ctx, chat.SendMessage{Sender: from, Conv: req.Conv, To: req.To, ClientMsgID: req.Cmid, ContentType: req.Ctype, Body: req.Body,
			ReplyTo: req.ReplyTo, Mentions: req.Mentions})
		if err == nil {
			if !res.Duplicate {
				s.metrics.MessageStored()
			}
			s.logSend(&res.Message, "invoke", res.Duplicate, time.Since(start), traceFields(ctx)...)
			reply.Message, reply.Duplicate = toPB(&res.Message), res.Duplicate
		}
	}
	if err != nil {
		ae := toAPIError(err)
		s.metrics.Error(ae.Code)
		if ae.Code == CodeRateLimited {
			s.metrics.RateLimited(metrics.LimitSend)
		}
		reply.Error = toErrorReply(ae)
	}
	return json.Marshal(reply)
}

// replyError is an invocation's reply carrying only an error.
func replyError(e apiError) ([]byte, error) {
	return json.Marshal(map[string]*errorReply{"error": toErrorReply(e)})
}
