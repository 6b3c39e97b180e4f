package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-im/parley/app/chat"
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
	From  string `json:"from"`
	To    string `json:"to"`
	Conv  string `json:"conv"`
	Cmid  string `json:"cmid"`
	Ctype string `json:"ctype"`
	Body  string `json:"body"`
}

// invokeReply carries the stored message, or the same error a client gets.
type invokeReply struct {
	Message   *pb.Message `json:"message,omitempty"`
	Duplicate bool        `json:"duplicate,omitempty"`
	Error     *struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Retryable bool   `json:"retryable,omitempty"`
	} `json:"error,omitempty"`
}

// ServeInvocations registers the methods other services call on parley.
func (s *Server) ServeInvocations(inv infrastructure.Invoker) error {
	return inv.Serve(InvokeSendMethod, s.invokeSend)
}

func (s *Server) invokeSend(ctx context.Context, data []byte) ([]byte, error) {
	var req invokeSend
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: body is not JSON of the documented shape: %s", infrastructure.ErrInvalidArgument, trimErr(err))
	}
	var reply invokeReply
	from, err := domain.ParseUserID(req.From)
	if err == nil {
		start := time.Now()
		var res chat.SendResult
		res, err = s.send.Handle(ctx, chat.SendMessage{Sender: from, Conv: req.Conv, To: req.To, ClientMsgID: req.Cmid, ContentType: req.Ctype, Body: req.Body})
		if err == nil {
			s.logSend(&res.Message, "invoke", res.Duplicate, time.Since(start))
			reply.Message, reply.Duplicate = toPB(&res.Message), res.Duplicate
		}
	}
	if err != nil {
		ae := toAPIError(err)
		reply.Error = &struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			Retryable bool   `json:"retryable,omitempty"`
		}{ae.Code, ae.Message, ae.Retryable}
	}
	return json.Marshal(reply)
}
