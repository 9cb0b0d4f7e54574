package admin

import (
	"errors"
	"math"
	"net/http"

	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/auth"
)

// The auth routes of the JSON API.

// loginResponse is the body of POST /auth/login.
type loginResponse struct {
	Token string `json:"token"`
	// ExpiresIn is the token's lifetime in seconds.
	ExpiresIn int64 `json:"expires_in"`
}

// login is POST /auth/login: credentials in a JSON body
// {"username","password"} or as HTTP Basic, a bearer token in return.
// Failures count against the client's login rate limit.
func (h *JSONAPI) login(c *call) (int, any) {
	if !h.users.Enabled() {
		return http.StatusForbidden, errorBody{Error: auth.ErrNoUsers.Error()}
	}
	var req loginRequest
	switch rerr := decodeJSON(c.r.Body, &req); {
	case rerr == errEmptyBody:
		var ok bool
		if req.Username, req.Password, ok = c.r.BasicAuth(); !ok {
			return authError(c.w, auth.ErrNoCredentials, "unauthorized")
		}
	case rerr != nil:
		return rerr.reply()
	}
	if _, err := h.users.Login(auth.ClientIP(c.r), req.Username, req.Password); err != nil {
		return authError(c.w, err, "invalid_credentials")
	}
	tok, ttl, err := h.users.IssueToken(req.Username)
	if errors.Is(err, auth.ErrTooManyTokens) {
		return http.StatusServiceUnavailable, errorBody{Error: err.Error()}
	}
	if err != nil {
		h.logger.Error("issuing a token", zap.Error(err))
		return http.StatusInternalServerError, errorBody{Error: err.Error()}
	}
	return http.StatusOK, loginResponse{Token: tok, ExpiresIn: int64(math.Ceil(ttl.Seconds()))}
}

// rotate is POST /auth/rotate: revoke every bearer token of every user and
// front. Unlike TagCache's, it makes no new credentials: there is never a
// generated or default password; passwords change with /auth/password.
func (h *JSONAPI) rotate(c *call) (int, any) {
	n, err := h.users.RevokeTokens(c.r.Context())
	if err != nil {
		h.logger.Error("persisting a token rotation", zap.Error(err))
		return http.StatusInternalServerError, errorBody{Error: err.Error()}
	}
	return http.StatusOK, map[string]any{"ok": true, "revoked": n}
}

// changePassword is POST /auth/password {"username","new_password"}: set
// a user's password (the caller's if username is absent), persist it in
// Caddy's storage and revoke the user's tokens.
func (h *JSONAPI) changePassword(c *call) (int, any) {
	var req passwordRequest
	if rerr := decodeJSON(c.r.Body, &req); rerr != nil {
		return rerr.reply()
	}
	if req.Username == "" {
		req.Username = c.user
	}
	if req.Username == "" {
		return http.StatusBadRequest, errorBody{Error: "username is required"}
	}
	err := h.users.SetPassword(c.r.Context(), req.Username, req.NewPassword)
	switch {
	case errors.Is(err, auth.ErrUnknownUser):
		return http.StatusNotFound, errorf("no user named %q is configured", req.Username)
	case errors.Is(err, auth.ErrPasswordLength):
		return http.StatusBadRequest, errorBody{Error: err.Error()}
	case err != nil:
		h.logger.Error("changing a password", zap.String("user", req.Username), zap.Error(err))
		return http.StatusInternalServerError, errorBody{Error: err.Error()}
	}
	h.logger.Info("password changed", zap.String("user", req.Username), zap.String("by", c.user))
	return http.StatusOK, map[string]bool{"success": true}
}
