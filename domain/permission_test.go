package domain_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/parley-im/parley/domain"
)

// The expectations are written out by hand, not derived from the table they
// check: "ok" is allowed, "admin" and "owner" are refusals naming the role
// that is needed, "none" is a refusal no role passes.
var roles = []domain.Role{domain.RoleOwner, domain.RoleAdmin, domain.RoleMember}

// untargeted: actor role -> result, in the order owner, admin, member.
var untargeted = map[domain.Action][3]string{
	domain.ActionSend:       {"ok", "ok", "ok"},
	domain.ActionRead:       {"ok", "ok", "ok"},
	domain.ActionInvite:     {"ok", "ok", "ok"},
	domain.ActionLeave:      {"ok", "ok", "ok"},
	domain.ActionApprove:    {"ok", "ok", "admin"},
	domain.ActionMuteAll:    {"ok", "ok", "admin"},
	domain.ActionRename:     {"ok", "ok", "admin"},
	domain.ActionNotice:     {"ok", "ok", "admin"},
	domain.ActionExt:        {"ok", "ok", "admin"},
	domain.ActionSettings:   {"ok", "ok", "admin"},
	domain.ActionDissolve:   {"ok", "owner", "owner"},
	domain.ActionMentionAll: {"ok", "ok", "admin"},
}

// targeted: [actor][target] -> result, both in the order owner, admin, member.
var targeted = map[domain.Action][3][3]string{
	domain.ActionKick: {
		{"none", "ok", "ok"},
		{"none", "owner", "ok"},
		{"none", "owner", "admin"},
	},
	domain.ActionMute: {
		{"none", "ok", "ok"},
		{"none", "owner", "ok"},
		{"none", "owner", "admin"},
	},
	domain.ActionRecall: {
		{"none", "ok", "ok"},
		{"none", "owner", "ok"},
		{"none", "owner", "admin"},
	},
	domain.ActionSetRole: {
		{"none", "ok", "ok"},
		{"none", "owner", "owner"},
		{"none", "owner", "owner"},
	},
	domain.ActionTransfer: {
		{"none", "ok", "ok"},
		{"none", "owner", "owner"},
		{"none", "owner", "owner"},
	},
}

func checkPermit(t *testing.T, err error, action domain.Action, target domain.Role, want string) {
	t.Helper()
	if want == "ok" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	var fe *domain.ForbiddenError
	if !errors.As(err, &fe) || !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("err = %v, want a ForbiddenError", err)
	}
	need := want
	if want == "none" {
		need = ""
	}
	if fe.Action != action || string(fe.Need) != need || fe.Target != target {
		t.Fatalf("refusal %+v, want action %s need %q target %q", fe, action, need, target)
	}
	if fe.Error() == "" {
		t.Fatal("refusal has no message")
	}
}

func TestPermitTable(t *testing.T) {
	t.Parallel()
	for _, a := range domain.Actions() {
		_, u := untargeted[a]
		_, g := targeted[a]
		if u == g {
			t.Errorf("action %s needs exactly one row of expectations", a)
		}
		if a.Targeted() != g {
			t.Errorf("action %s: Targeted() = %v", a, a.Targeted())
		}
	}
	if len(untargeted)+len(targeted) != len(domain.Actions()) {
		t.Errorf("expectations name actions that Actions() does not list")
	}
	for action, want := range untargeted {
		for i, actor := range roles {
			t.Run(fmt.Sprintf("%s_by_%s", action, actor), func(t *testing.T) {
				t.Parallel()
				// The target is ignored by untargeted actions.
				for _, target := range []domain.Role{"", domain.RoleOwner, domain.RoleMember} {
					checkPermit(t, domain.Permit(actor, action, target), action, "", want[i])
				}
			})
		}
	}
	for action, want := range targeted {
		for i, actor := range roles {
			for j, target := range roles {
				t.Run(fmt.Sprintf("%s_by_%s_on_%s", action, actor, target), func(t *testing.T) {
					t.Parallel()
					checkPermit(t, domain.Permit(actor, action, target), action, target, want[i][j])
				})
			}
		}
	}
}

func TestPermitRefusesOutsiders(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		actor, target domain.Role
		action        domain.Action
		want          error
	}{
		{"non_member_sends", "", domain.RoleMember, domain.ActionSend, domain.ErrNotMember},
		{"non_member_kicks", "", domain.RoleMember, domain.ActionKick, domain.ErrNotMember},
		{"kick_a_non_member", domain.RoleOwner, "", domain.ActionKick, domain.ErrNotMember},
		{"unknown_actor_role", "root", "", domain.ActionSend, domain.ErrUnknownRole},
		{"unknown_target_role", domain.RoleOwner, "root", domain.ActionKick, domain.ErrUnknownRole},
		{"unknown_action", domain.RoleOwner, "", "launch", domain.ErrForbidden},
		{"service_action_not_in_table", domain.RoleOwner, "", domain.ActionAssign, domain.ErrForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if err := domain.Permit(c.actor, c.action, c.target); !errors.Is(err, c.want) {
				t.Fatalf("Permit = %v, want %v", err, c.want)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	t.Parallel()
	for _, r := range roles {
		if got, err := domain.ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, s := range []string{"", "Owner", "root", "member "} {
		if _, err := domain.ParseRole(s); !errors.Is(err, domain.ErrUnknownRole) {
			t.Errorf("ParseRole(%q) = %v, want ErrUnknownRole", s, err)
		}
	}
}
