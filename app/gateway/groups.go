package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// Bounds the gateway applies before a use case runs, so that an oversized
// list or string costs no parsing further in. The domain checks the exact
// rules; these are the same limits or looser.
const (
	maxUserIDBytes = 64
	maxOpBytes     = 16
	maxRoleBytes   = 16
	maxPolicyBytes = 16
	// maxNameBytes: MaxGroupNameRunes characters of up to 4 bytes each.
	maxNameBytes = domain.MaxGroupNameRunes * 4
)

// checkMentions bounds a mention list before it is parsed.
func checkMentions(ms []string) error {
	if len(ms) > domain.MaxMentions {
		return &domain.InvalidError{Kind: domain.ErrInvalidMention, Value: fmt.Sprint(len(ms)), Reason: fmt.Sprintf("at most %d mentions", domain.MaxMentions)}
	}
	for _, m := range ms {
		if len(m) > maxUserIDBytes {
			return &domain.InvalidError{Kind: domain.ErrInvalidMention, Value: m[:maxUserIDBytes] + "…", Reason: "longer than a user id"}
		}
	}
	return nil
}

// groupFields is what a group_create or group request carries, from a
// frame, an HTTP body or an invocation.
type groupFields struct {
	Conv   string   `json:"conv"`
	Op     string   `json:"op"`
	Users  []string `json:"users"`
	Role   string   `json:"role"`
	Until  int64    `json:"until"`
	On     bool     `json:"on"`
	Name   string   `json:"name"`
	Notice string   `json:"notice"`
	Ext    string   `json:"ext"`
	Policy string   `json:"policy"`
	Note   string   `json:"note"`
	Cmid   string   `json:"cmid"`
}

func groupFieldsOf(f *pb.Frame) groupFields {
	return groupFields{Conv: f.Conv, Op: f.Op, Users: f.Users, Role: f.Role, Until: f.Until, On: f.On,
		Name: f.Name, Notice: f.Notice, Ext: f.Ext, Policy: f.Policy, Note: f.Note, Cmid: f.Cmid}
}

// check bounds every field before the use case runs.
func (g *groupFields) check() error {
	if len(g.Users) > domain.MaxMembersPerCall {
		return &domain.TooManyMembersError{Count: len(g.Users), Limit: domain.MaxMembersPerCall}
	}
	for _, u := range g.Users {
		if len(u) > maxUserIDBytes {
			return &domain.InvalidError{Kind: domain.ErrInvalidUserID, Value: u[:maxUserIDBytes] + "…", Reason: "longer than 64 bytes"}
		}
	}
	switch {
	case len(g.Name) > maxNameBytes:
		return &domain.InvalidError{Kind: domain.ErrInvalidName, Value: g.Name[:64] + "…", Reason: fmt.Sprintf("at most %d characters", domain.MaxGroupNameRunes)}
	case len(g.Notice) > domain.MaxNoticeBytes:
		return &domain.InvalidError{Kind: domain.ErrInvalidNotice, Value: g.Notice[:64] + "…", Reason: fmt.Sprintf("at most %d bytes", domain.MaxNoticeBytes)}
	case len(g.Note) > domain.MaxJoinNoteBytes:
		return &domain.InvalidError{Kind: domain.ErrInvalidNotice, Value: g.Note[:64] + "…", Reason: fmt.Sprintf("a join request note is at most %d bytes", domain.MaxJoinNoteBytes)}
	case len(g.Ext) > domain.MaxExtBytes:
		return &domain.InvalidError{Kind: domain.ErrInvalidExt, Value: g.Ext[:64] + "…", Reason: fmt.Sprintf("at most %d bytes", domain.MaxExtBytes)}
	case len(g.Op) > maxOpBytes:
		return fmt.Errorf("%w %.16q…", chat.ErrUnknownGroupOp, g.Op)
	case len(g.Role) > maxRoleBytes:
		return &domain.InvalidError{Kind: domain.ErrUnknownRole, Value: g.Role[:maxRoleBytes] + "…", Reason: "use admin or member"}
	case len(g.Policy) > maxPolicyBytes:
		return &domain.InvalidError{Kind: domain.ErrUnknownJoinPolicy, Value: g.Policy[:maxPolicyBytes] + "…", Reason: "use open, approval or invite_only"}
	}
	return nil
}

func userIDs(ss []string) []domain.UserID {
	if len(ss) == 0 {
		return nil
	}
	out := make([]domain.UserID, len(ss))
	for i, s := range ss {
		out[i] = domain.UserID(s)
	}
	return out
}

// errGroupsOff answers group requests on a server wired without groups.
var errGroupsOff = errors.New("groups are not enabled on this server")

// createGroup runs a group_create for actor.
func (s *Server) createGroup(ctx context.Context, actor domain.UserID, g groupFields) (chat.GroupResult, error) {
	if s.groups == nil {
		return chat.GroupResult{}, errGroupsOff
	}
	if err := g.check(); err != nil {
		return chat.GroupResult{}, err
	}
	policy := domain.PolicyInviteOnly
	if g.Policy != "" {
		p, err := domain.ParseJoinPolicy(g.Policy)
		if err != nil {
			return chat.GroupResult{}, err
		}
		policy = p
	}
	return s.groups.Create(ctx, chat.CreateGroup{Actor: actor, ClientMsgID: g.Cmid, Spec: domain.GroupSpec{
		Name: g.Name, Notice: g.Notice, Ext: g.Ext, Policy: policy, HistoryVisible: g.On, Members: userIDs(g.Users),
	}})
}

// changeGroup runs a group operation for actor.
func (s *Server) changeGroup(ctx context.Context, actor domain.UserID, g groupFields) (chat.GroupResult, error) {
	if s.groups == nil {
		return chat.GroupResult{}, errGroupsOff
	}
	if err := g.check(); err != nil {
		return chat.GroupResult{}, err
	}
	if g.Conv == "" {
		return chat.GroupResult{}, &domain.InvalidError{Kind: domain.ErrInvalidConversationID, Reason: `a group operation needs "conv"`}
	}
	return s.groups.Change(ctx, chat.GroupChange{
		Actor: actor, Conv: g.Conv, Op: chat.GroupOp(g.Op), Users: userIDs(g.Users), Role: g.Role, UntilMs: g.Until,
		On: g.On, Name: g.Name, Notice: g.Notice, Ext: g.Ext, Policy: g.Policy, Note: g.Note, ClientMsgID: g.Cmid,
	})
}

// groupResultFrame is the group_result answer.
func groupResultFrame(id string, res chat.GroupResult) *pb.Frame {
	f := &pb.Frame{Type: "group_result", Id: id, Conv: string(res.Group.ID), Group: toPBGroup(&res.Group)}
	if res.Event != nil {
		f.Msg = toPB(res.Event)
	}
	f.Requests = toPBRequests(res.Requests)
	return f
}

func toPBGroup(g *domain.GroupInfo) *pb.Group {
	if g == nil || g.ID == "" {
		return nil
	}
	return &pb.Group{Id: string(g.ID), Name: g.Name, Notice: g.Notice, Ext: string(g.Ext), Owner: string(g.Owner),
		Policy: string(g.Policy), History: g.HistoryVisible, MutedAll: g.MutedAll, Dissolved: g.Dissolved,
		Count: uint32(g.MemberCount), Created: g.CreatedMs}
}

func toPBRequests(rs []chat.JoinRequest) []*pb.JoinRequest {
	if len(rs) == 0 {
		return nil
	}
	out := make([]*pb.JoinRequest, len(rs))
	for i, r := range rs {
		out[i] = &pb.JoinRequest{User: string(r.User), Note: r.Note, At: r.AtMs}
	}
	return out
}

// changeMessage recalls or edits a message for actor.
func (s *Server) changeMessage(ctx context.Context, cmd chat.ChangeMessage) (domain.Message, error) {
	if s.change == nil {
		return domain.Message{}, errGroupsOff
	}
	if cmd.Conv == "" {
		return domain.Message{}, &domain.InvalidError{Kind: domain.ErrInvalidConversationID, Reason: `recall and edit need "conv"`}
	}
	return s.change.Handle(ctx, cmd)
}

// handleGroupFrame answers group_create, group, recall, edit and typing.
// It reports false for a type it does not know.
func (c *conn) handleGroupFrame(ctx context.Context, f *pb.Frame) bool {
	switch {
	case f.Type == "group_create" && c.srv.groups != nil:
		res, err := c.srv.createGroup(ctx, c.user, groupFieldsOf(f))
		if err != nil {
			c.sendErr(f.Id, err)
			return true
		}
		c.send(groupResultFrame(f.Id, res))
	case f.Type == "group" && c.srv.groups != nil:
		res, err := c.srv.changeGroup(ctx, c.user, groupFieldsOf(f))
		if err != nil {
			c.sendErr(f.Id, err)
			return true
		}
		c.send(groupResultFrame(f.Id, res))
	case (f.Type == "recall" || f.Type == "edit") && c.srv.change != nil:
		ev, err := c.srv.changeMessage(ctx, chat.ChangeMessage{Actor: c.user, Conv: f.Conv, Seq: f.Seq, Recall: f.Type == "recall",
			ContentType: f.Ctype, Body: f.Body, ClientMsgID: f.Cmid})
		if err != nil {
			c.sendErr(f.Id, err)
			return true
		}
		c.send(&pb.Frame{Type: "ack", Id: f.Id, Msg: toPB(&ev)})
	case f.Type == "typing" && c.srv.typing != nil:
		// A notice dropped as too frequent is not an error: the one
		// before it still stands.
		if _, err := c.srv.typing.Handle(ctx, chat.Typing{User: c.user, Conv: f.Conv, Active: f.On}); err != nil {
			c.sendErr(f.Id, err)
		}
	default:
		return false
	}
	return true
}

// HTTP routes.

func (s *Server) postGroup(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	var req groupFields
	if !s.readJSON(w, r, &req) {
		return
	}
	res, err := s.createGroup(r.Context(), user, req)
	if err != nil {
		s.writeError(w, groupsError(err))
		return
	}
	writeJSON(w, http.StatusOK, groupReply(res))
}

func (s *Server) postGroupChange(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	var req groupFields
	if !s.readJSON(w, r, &req) {
		return
	}
	req.Conv = r.PathValue("conv")
	res, err := s.changeGroup(r.Context(), user, req)
	if err != nil {
		s.writeError(w, groupsError(err))
		return
	}
	writeJSON(w, http.StatusOK, groupReply(res))
}

func (s *Server) getJoinRequests(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	res, err := s.changeGroup(r.Context(), user, groupFields{Conv: r.PathValue("conv"), Op: string(chat.OpRequests)})
	if err != nil {
		s.writeError(w, groupsError(err))
		return
	}
	reqs := toPBRequests(res.Requests)
	if reqs == nil {
		reqs = []*pb.JoinRequest{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"conv": res.Group.ID, "requests": reqs})
}

type messageChangeRequest struct {
	Conv  string `json:"conv"`
	Seq   uint64 `json:"seq"`
	Ctype string `json:"ctype"`
	Body  string `json:"body"`
	Cmid  string `json:"cmid"`
}

func (s *Server) postRecall(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	s.postMessageChange(w, r, user, true)
}

func (s *Server) postEdit(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	s.postMessageChange(w, r, user, false)
}

func (s *Server) postMessageChange(w http.ResponseWriter, r *http.Request, user domain.UserID, recall bool) {
	var req messageChangeRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	ev, err := s.changeMessage(r.Context(), chat.ChangeMessage{Actor: user, Conv: req.Conv, Seq: req.Seq, Recall: recall,
		ContentType: req.Ctype, Body: req.Body, ClientMsgID: req.Cmid})
	if err != nil {
		s.writeError(w, groupsError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"msg": toPB(&ev)})
}

func (s *Server) postTyping(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	var req struct {
		Conv string `json:"conv"`
		On   bool   `json:"on"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	if s.typing == nil {
		s.writeError(w, groupsError(errGroupsOff))
		return
	}
	passed, err := s.typing.Handle(r.Context(), chat.Typing{User: user, Conv: req.Conv, Active: req.On})
	if err != nil {
		s.writeError(w, toAPIError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conv": req.Conv, "passed": passed})
}

// groupsError sorts errGroupsOff, then the rest as usual.
func groupsError(err error) apiError {
	if errors.Is(err, errGroupsOff) {
		return apiError{http.StatusNotFound, CodeNotFound, err.Error(), false, 0}
	}
	return toAPIError(err)
}

// groupResultReply is a group request's HTTP and invocation reply.
type groupResultReply struct {
	Conv     string            `json:"conv,omitempty"`
	Group    *pb.Group         `json:"group,omitempty"`
	Msg      *pb.Message       `json:"msg,omitempty"`
	Requests []*pb.JoinRequest `json:"requests,omitempty"`
	Error    *errorReply       `json:"error,omitempty"`
}

func groupReply(res chat.GroupResult) groupResultReply {
	out := groupResultReply{Conv: string(res.Group.ID), Group: toPBGroup(&res.Group), Requests: toPBRequests(res.Requests)}
	if res.Event != nil {
		out.Msg = toPB(res.Event)
	}
	return out
}

// Methods a business server invokes through Dapr to create and change
// groups as a given user ("from"), like InvokeSendMethod.
const (
	InvokeGroupsMethod      = "v1/groups"
	InvokeGroupChangeMethod = "v1/groups/change"
)

// invokeGroup is the body of InvokeGroupsMethod and InvokeGroupChangeMethod.
type invokeGroup struct {
	From string `json:"from"`
	groupFields
}

func (s *Server) invokeGroupCreate(ctx context.Context, data []byte) ([]byte, error) {
	return s.invokeGroupOp(ctx, data, s.createGroup)
}

func (s *Server) invokeGroupChange(ctx context.Context, data []byte) ([]byte, error) {
	return s.invokeGroupOp(ctx, data, s.changeGroup)
}

func (s *Server) invokeGroupOp(ctx context.Context, data []byte, op func(context.Context, domain.UserID, groupFields) (chat.GroupResult, error)) ([]byte, error) {
	var req invokeGroup
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: body is not JSON of the documented shape: %s", infrastructure.ErrInvalidArgument, trimErr(err))
	}
	from, err := domain.ParseUserID(req.From)
	var res chat.GroupResult
	if err == nil {
		res, err = op(ctx, from, req.groupFields)
	}
	if err != nil {
		return json.Marshal(groupResultReply{Error: toErrorReply(groupsError(err))})
	}
	return json.Marshal(groupReply(res))
}
