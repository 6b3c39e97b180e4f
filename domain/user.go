package domain

// UserID identifies a user: the subject of their token. It is 1 to 64
// characters of letters, digits, '_', '-', '.' and '@'.
type UserID string

// MaxUserIDLen bounds a user id.
const MaxUserIDLen = 64

// ParseUserID validates s as a user id.
func ParseUserID(s string) (UserID, error) {
	if s == "" {
		return "", invalid(ErrInvalidUserID, s, "must not be empty")
	}
	if len(s) > MaxUserIDLen {
		return "", invalid(ErrInvalidUserID, s, "longer than 64 characters")
	}
	for i := 0; i < len(s); i++ {
		if !idChar(s[i]) && s[i] != '@' {
			return "", invalid(ErrInvalidUserID, s, "only letters, digits and _ - . @ are allowed")
		}
	}
	return UserID(s), nil
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}
