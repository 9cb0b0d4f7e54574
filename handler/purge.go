package handler

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/internal/urltag"
)

const methodPurge = "PURGE"

// PurgeResponse is the JSON body that answers an allowed PURGE.
type PurgeResponse struct {
	// Purged is the number of entries removed, or marked stale by a soft
	// purge.
	Purged int `json:"purged"`
	// Soft reports a soft purge.
	Soft bool `json:"soft"`
	// Tags are the tags purged; a PURGE of a URL purges its URL tag.
	Tags []string `json:"tags"`
}

// servePurge handles the PURGE method. With Surrogate-Key fields it purges
// every entry carrying any of their tags; without, every variant of the
// request's URL. Fastly-Soft-Purge: 1 (or soft_purge) marks the entries
// stale instead of removing them.
func (h *Handler) servePurge(w http.ResponseWriter, r *http.Request) error {
	if !h.purgeAllowed(r) {
		return writeJSON(w, http.StatusForbidden, map[string]string{
			"error": "PURGE is allowed from trusted addresses (purge_from) and to users with the purge permission",
		})
	}
	soft := h.SoftPurge || strings.TrimSpace(r.Header.Get("Fastly-Soft-Purge")) == "1"
	tags := purgeTags(r.Header["Surrogate-Key"])
	if len(tags) == 0 {
		tags = []string{urlTag(r)}
	}
	var n int
	if soft {
		n = h.st.StaleTags(tags...)
	} else {
		n = h.st.InvalidateTags(tags...)
	}
	httpMetrics.purges.Inc()
	httpMetrics.purgedEntries.Add(float64(n))
	h.logger.Debug("purged", zap.Strings("tags", tags), zap.Bool("soft", soft), zap.Int("entries", n))
	return writeJSON(w, http.StatusOK, PurgeResponse{Purged: n, Soft: soft, Tags: tags})
}

// purgeAllowed reports whether the client may purge: from a trusted range,
// or authenticated with HTTP Basic as a user with the purge permission.
func (h *Handler) purgeAllowed(r *http.Request) bool {
	if ip, ok := clientIP(r); ok {
		for _, p := range h.purgeNets {
			if p.Contains(ip) {
				return true
			}
		}
	}
	user, pass, ok := r.BasicAuth()
	if !ok || h.users == nil {
		return false
	}
	perm, err := h.users.Authenticate(user, pass)
	return err == nil && perm.Has(auth.PermPurge)
}

// clientIP is the client's address as Caddy determined it (honoring the
// server's trusted_proxies), or the connection's peer.
func clientIP(r *http.Request) (netip.Addr, bool) {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if s == "" {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		s = host
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return ip, false
	}
	return ip.Unmap(), true
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// serveUnsafe forwards a POST, PUT, DELETE or PATCH and, when it succeeds,
// invalidates the responses of its URL and of the Location and
// Content-Location URLs on the same host (RFC 9111 section 4.4). It does so
// before the client sees the response, so that the client's next GET does
// not get the old one.
func (h *Handler) serveUnsafe(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	httpMetrics.bypasses.Inc()
	iw := &invalidator{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h, r: r}
	return next.ServeHTTP(iw, r)
}

// invalidator watches the status of an unsafe method's response.
type invalidator struct {
	*caddyhttp.ResponseWriterWrapper
	h     *Handler
	r     *http.Request
	wrote bool
}

func (iw *invalidator) WriteHeader(status int) {
	if !iw.wrote && status >= 200 {
		iw.wrote = true
		hdr := iw.Header()
		if status < 400 {
			iw.h.invalidate(iw.r, hdr)
		}
		iw.h.setStatus(hdr, iw.h.CacheName+"; fwd=method")
	}
	iw.ResponseWriterWrapper.WriteHeader(status)
}

func (iw *invalidator) Write(p []byte) (int, error) {
	if !iw.wrote {
		iw.WriteHeader(http.StatusOK)
	}
	return iw.ResponseWriterWrapper.Write(p)
}

func (iw *invalidator) ReadFrom(src io.Reader) (int64, error) {
	if !iw.wrote {
		iw.WriteHeader(http.StatusOK)
	}
	return iw.ResponseWriterWrapper.ReadFrom(src)
}

// FlushError writes the header first, as a flush would, so the
// invalidation happens before it goes out.
func (iw *invalidator) FlushError() error {
	if !iw.wrote {
		iw.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(iw.ResponseWriterWrapper).Flush()
}

// invalidate removes the cached responses of r's URL and of the same-host
// URLs in the response's Location and Content-Location.
func (h *Handler) invalidate(r *http.Request, hdr http.Header) {
	tags := []string{urlTag(r)}
	base := &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}
	for _, f := range []string{"Location", "Content-Location"} {
		v := hdr.Get(f)
		if v == "" {
			continue
		}
		u, err := base.Parse(v)
		if err == nil && strings.EqualFold(u.Host, r.Host) {
			tags = append(tags, urltag.For(u.Host, u.Path))
		}
	}
	if n := h.st.InvalidateTags(tags...); n > 0 {
		h.logger.Debug("invalidated by unsafe method", zap.String("method", r.Method), zap.Strings("tags", tags), zap.Int("entries", n))
	}
}
