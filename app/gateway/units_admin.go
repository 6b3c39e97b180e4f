package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/parley-im/parley/app/units"
	"github.com/parley-im/parley/domain"
)

// CodeMoveBusy answers a move of a conversation that another move holds.
const CodeMoveBusy = "move_busy"

// Mover moves a conversation to another unit: *units.Units.
type Mover interface {
	Move(ctx context.Context, conv domain.ConversationID, to string) (units.Route, error)
}

// WithMover serves the operator's move of a conversation to another unit
// (POST /v1/admin/units/move) through m. Without it, the route answers
// not_found: the node is not one of several units. Call it before serving.
func (s *Server) WithMover(m Mover) *Server {
	s.mover = m
	return s
}

// unitRoutes registers the operator API of units on m.
func (s *Server) unitRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /v1/admin/units/move", s.adminAuthed(s.postMove))
}

// moveRequest is the body of POST /v1/admin/units/move.
type moveRequest struct {
	Conv string `json:"conv"`
	To   string `json:"to"`
}

func (s *Server) postMove(w http.ResponseWriter, r *http.Request) {
	if s.mover == nil {
		s.writeError(w, apiError{http.StatusNotFound, CodeNotFound, "this node is not one of several units (-unit)", false, 0})
		return
	}
	var req moveRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	route, err := s.mover.Move(r.Context(), domain.ConversationID(req.Conv), req.To)
	if err != nil {
		s.writeError(w, moveError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conv": req.Conv, "unit": route.Unit, "epoch": route.Epoch})
}

// moveError sorts the errors of a move; the rest go to toAPIError.
func moveError(err error) apiError {
	switch {
	case errors.Is(err, units.ErrNotMovable), errors.Is(err, units.ErrUnknownUnit):
		return apiError{http.StatusBadRequest, CodeBadFrame, err.Error(), false, 0}
	case errors.Is(err, units.ErrNoRoute):
		return apiError{http.StatusNotFound, CodeNotFound, err.Error(), false, 0}
	case errors.Is(err, units.ErrMoveBusy):
		return apiError{http.StatusConflict, CodeMoveBusy, err.Error(), true, 0}
	}
	return toAPIError(err)
}
