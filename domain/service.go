package domain

import "strings"

// ServiceRole is a party's place in a customer-service conversation.
type ServiceRole string

const (
	// ServiceCustomer is the user who contacts the shop.
	ServiceCustomer ServiceRole = "customer"
	// ServiceShop is the shop's business account, which the shop's systems
	// act through.
	ServiceShop ServiceRole = "shop"
	// ServiceAgent is the person assigned to answer the customer for now.
	ServiceAgent ServiceRole = "agent"
)

// ActionAssign hands a service conversation to an agent. It is not in the
// group permission table: the shop's account and the current agent may,
// the customer may not (ServiceConversation.Assign).
const ActionAssign Action = "assign_agent"

// ServiceConversationID returns the id of the conversation between shop and
// customer: one per pair, whoever answers it.
func ServiceConversationID(shop, customer UserID) ConversationID {
	return ConversationID("s:" + string(shop) + "~" + string(customer))
}

// ServiceParties returns the shop and customer a valid service id names.
func (id ConversationID) ServiceParties() (shop, customer UserID, ok bool) {
	rest, ok := strings.CutPrefix(string(id), "s:")
	if !ok {
		return "", "", false
	}
	a, b, ok := strings.Cut(rest, "~")
	return UserID(a), UserID(b), ok
}

// ServiceConversation is a customer-service conversation's record. Its
// members are the customer, the shop's account and the assigned agent, if
// any; a transfer to another agent is an EventAgentAssigned in its stream,
// so the customer sees who answers. The zero value is not valid; use
// NewServiceConversation.
type ServiceConversation struct {
	ID       ConversationID `json:"id"`
	Shop     UserID         `json:"shop"`
	Customer UserID         `json:"customer"`
	// Agent answers for the shop; empty until one is assigned.
	Agent UserID `json:"agent,omitempty"`
	// CreatedMs is the creation time in Unix milliseconds.
	CreatedMs int64 `json:"created"`
}

// NewServiceConversation returns the conversation of customer with shop.
func NewServiceConversation(shop, customer UserID, nowMs int64) (ServiceConversation, error) {
	id := ServiceConversationID(shop, customer)
	if _, _, err := ParseConversationID(string(id)); err != nil {
		return ServiceConversation{}, err
	}
	return ServiceConversation{ID: id, Shop: shop, Customer: customer, CreatedMs: nowMs}, nil
}

// RoleOf returns u's role, or ErrNotMember. An agent who is also the shop
// account counts as the shop.
func (s ServiceConversation) RoleOf(u UserID) (ServiceRole, error) {
	switch {
	case u == "":
		return "", ErrNotMember
	case u == s.Customer:
		return ServiceCustomer, nil
	case u == s.Shop:
		return ServiceShop, nil
	case u == s.Agent:
		return ServiceAgent, nil
	}
	return "", ErrNotMember
}

// Members lists who receives the conversation's messages.
func (s ServiceConversation) Members() []UserID {
	out := []UserID{s.Customer, s.Shop}
	if s.Agent != "" && s.Agent != s.Shop {
		out = append(out, s.Agent)
	}
	return out
}

// Assign hands the conversation to the agent to: the shop's account or the
// current agent may, the customer may not.
func (s ServiceConversation) Assign(actor, to UserID) (SystemEvent, error) {
	role, err := s.RoleOf(actor)
	if err != nil {
		return SystemEvent{}, err
	}
	if role == ServiceCustomer {
		return SystemEvent{}, &ForbiddenError{Action: ActionAssign}
	}
	if _, err := ParseUserID(string(to)); err != nil {
		return SystemEvent{}, err
	}
	if to == s.Customer {
		return SystemEvent{}, invalid(ErrInvalidUserID, string(to), "the customer cannot be the agent")
	}
	if to == s.Agent {
		return SystemEvent{}, ErrNoChange
	}
	return SystemEvent{Type: EventAgentAssigned, Actor: actor, Users: []UserID{to}}, nil
}

// Apply updates the record for the event e, once e is stored.
func (s *ServiceConversation) Apply(e SystemEvent) {
	if e.Type == EventAgentAssigned && len(e.Users) == 1 {
		s.Agent = e.Users[0]
	}
}
