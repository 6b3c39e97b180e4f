package chat

import (
	"context"
	"time"

	"github.com/parley-im/parley/domain"
)

// ConfirmDelivery says a device of Reader acknowledged message Seq of Conv.
type ConfirmDelivery struct {
	Reader domain.UserID
	Conv   domain.ConversationID
	Seq    uint64
	// Sender is the message's sender when the device acknowledged a push
	// this node made to it. Empty when the device got the message some
	// other way (by sync): the sender is then read from history, which
	// checks that Reader is a member.
	Sender domain.UserID
}

// DeliveryNotifier tells every device of sender, on any node, that a device
// of reader has message seq of conv. It must not block on a slow device.
type DeliveryNotifier interface {
	NotifyDelivered(ctx context.Context, sender domain.UserID, conv domain.ConversationID, seq uint64, reader domain.UserID)
}

// ConfirmDeliveryHandler turns a device's acknowledgement into a "delivered"
// event for the sender's devices. The zero value is not usable; use
// NewConfirmDeliveryHandler. Safe for concurrent use.
type ConfirmDeliveryHandler struct {
	history *HistoryHandler
	notify  DeliveryNotifier
}

// NewConfirmDeliveryHandler wires the handler. history may be nil: an
// acknowledgement whose sender is not known then tells no one.
func NewConfirmDeliveryHandler(history *HistoryHandler, n DeliveryNotifier) *ConfirmDeliveryHandler {
	return &ConfirmDeliveryHandler{history: history, notify: n}
}

// lookupTimeout bounds the history read that finds a sender: an
// acknowledgement is worth less than the device's next frame.
const lookupTimeout = 2 * time.Second

// Handle notifies the sender unless the reader is the sender (a device
// acknowledging its user's own message from another device) or the
// conversation is a group. A message that
// does not exist (a seq past the conversation's head) or a conversation the
// reader is not in tells no one.
func (h *ConfirmDeliveryHandler) Handle(ctx context.Context, cmd ConfirmDelivery) error {
	if cmd.Conv.Kind() == domain.Group {
		// One message to a group of thousands would make thousands of
		// notices for its sender; groups have read_by counts instead.
		return nil
	}
	sender := cmd.Sender
	if sender == "" {
		if cmd.Seq == 0 || h.history == nil {
			return nil
		}
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		page, err := h.history.Handle(lctx, History{Reader: cmd.Reader, Conv: string(cmd.Conv), After: cmd.Seq - 1, Limit: 1})
		cancel()
		if err != nil {
			return err
		}
		if len(page.Messages) != 1 || page.Messages[0].Seq != cmd.Seq {
			return nil
		}
		sender = page.Messages[0].Sender
	}
	if sender == cmd.Reader {
		return nil
	}
	h.notify.NotifyDelivered(ctx, sender, cmd.Conv, cmd.Seq, cmd.Reader)
	return nil
}
