package chat

import (
	"context"

	"github.com/parley-im/parley/domain"
)

// ListOnlineUsers asks for the users connected to any live node.
type ListOnlineUsers struct {
	Viewer domain.UserID
}

// LocalUsers lists the users connected to this node, sorted.
type LocalUsers interface {
	OnlineUsers() []domain.UserID
}

// ClusterUsers adds, to this node's users, those the other live nodes
// report, sorted.
type ClusterUsers interface {
	OnlineUsers(local []domain.UserID) []domain.UserID
}

// ListOnlineUsersHandler lists online users. The zero value is not usable;
// use NewListOnlineUsersHandler. Safe for concurrent use.
type ListOnlineUsersHandler struct {
	local   LocalUsers
	cluster ClusterUsers
}

// NewListOnlineUsersHandler wires the handler. cluster may be nil for a
// node that runs alone.
func NewListOnlineUsersHandler(local LocalUsers, cluster ClusterUsers) *ListOnlineUsersHandler {
	return &ListOnlineUsersHandler{local: local, cluster: cluster}
}

// Handle returns the online users, sorted; an empty list, never nil.
func (h *ListOnlineUsersHandler) Handle(_ context.Context, _ ListOnlineUsers) ([]domain.UserID, error) {
	users := h.local.OnlineUsers()
	if h.cluster != nil {
		users = h.cluster.OnlineUsers(users)
	}
	if users == nil {
		users = []domain.UserID{}
	}
	return users, nil
}
