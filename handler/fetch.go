package handler

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/store"
)

// conditionalFields are the client's conditionals the cache answers
// itself, so that upstream sends a full response it can store.
var conditionalFields = []string{"If-None-Match", "If-Modified-Since"}

// fetch forwards r to next through a capture: on a miss (stale == nil) or
// to revalidate the stale response lk.s. w is nil for a background
// revalidation. fwd is the Cache-Status reason.
func (h *Handler) fetch(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, reqCC *directives, lk *lookup, fwd string, fl *flight) error {
	var stale *stored
	if lk.found {
		stale = &lk.s
	}
	up, cond := upstreamRequest(r, reqCC, stale)
	c := &capture{
		h: h, w: w, req: up, reqCC: reqCC, cond: cond, stale: stale,
		fwd: fwd, reqTime: h.now(), flight: fl, key: lk.primary,
	}
	if w != nil {
		// Two copies: the client's map is rewritten when a 1xx goes out.
		c.pre = w.Header().Clone()
		c.header = w.Header().Clone()
	} else {
		c.header = make(http.Header)
	}
	err := next.ServeHTTP(c, up)
	if err == nil && !c.wroteHeader {
		// What net/http sends for a handler that wrote nothing.
		c.WriteHeader(http.StatusOK)
	}
	c.finish(err)

	switch {
	case c.notModified:
		return h.refresh(w, r, c, lk)
	case c.upstreamFailed,
		stale != nil && !c.wroteHeader && err != nil && c.staleOnError():
		if err != nil {
			h.logger.Debug("upstream failed; serving stale", zap.Error(err))
		}
		httpMetrics.stale.Inc()
		if w == nil {
			return nil
		}
		failed := c.status
		if !c.wroteHeader {
			failed = http.StatusBadGateway
		}
		age := stale.currentAge(h.now())
		return h.writeStored(w, r, stale, age, fmt.Sprintf("%s; fwd=stale; fwd-status=%d; detail=stale-if-error", h.CacheName, failed))
	case stale != nil && !c.wroteHeader && err != nil && stale.flags&flagMustRevalidate != 0:
		// RFC 9111 section 5.2.2.2: a response that must be revalidated
		// and cannot be is a 504.
		return caddyhttp.Error(http.StatusGatewayTimeout, err)
	}
	if w != nil && err == nil {
		c.copyTrailers()
	}
	return err
}

// upstreamRequest returns the request to send upstream and the client's
// conditionals that the cache answers itself. When the response may be
// stored, the client's If-None-Match and If-Modified-Since stay here so
// that upstream sends a full response; to revalidate, the stored
// response's validators go instead (RFC 9111 section 4.3.1).
func upstreamRequest(r *http.Request, reqCC *directives, stale *stored) (*http.Request, http.Header) {
	storable := r.Method == http.MethodGet && !reqCC.noStore
	held := storable && (len(r.Header["If-None-Match"]) > 0 || len(r.Header["If-Modified-Since"]) > 0)
	if !held && stale == nil {
		return r, nil
	}
	up := new(http.Request)
	*up = *r
	up.Header = r.Header.Clone()
	var cond http.Header
	if held {
		cond = make(http.Header, 2)
		for _, f := range conditionalFields {
			if v := up.Header[f]; len(v) > 0 {
				cond[f] = v
				delete(up.Header, f)
			}
		}
	}
	if stale != nil {
		for _, f := range conditionalFields {
			delete(up.Header, f)
		}
		delete(up.Header, "Range")
		delete(up.Header, "If-Range")
		if etag := stale.field("Etag"); etag != "" {
			up.Header.Set("If-None-Match", etag)
		}
		if lm := stale.field("Last-Modified"); lm != "" {
			up.Header.Set("If-Modified-Since", lm)
		}
	}
	return up, cond
}

// copyTrailers hands trailer fields set after the header was written to
// the client's header map, where net/http reads them.
func (c *capture) copyTrailers() {
	wh := c.w.Header()
	declared := c.header["Trailer"]
	for k, v := range c.header {
		if _, ok := wh[k]; ok {
			continue
		}
		if len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix {
			wh[k] = v
			continue
		}
		for _, d := range declared {
			if containsToken(d, k) {
				wh[k] = v
			}
		}
	}
}

// refresh updates the stored response after upstream confirmed it with
// 304: the 304's fields replace the stored ones (RFC 9111 section 3.2),
// freshness starts over, and the client (if any) gets the refreshed
// response.
func (h *Handler) refresh(w http.ResponseWriter, r *http.Request, c *capture, lk *lookup) error {
	old := &lk.s
	merged := old.header()
	for name, values := range c.header {
		if c.keepField(name) {
			merged[name] = values
		}
	}
	tags := lk.item.Tags
	for _, f := range h.tagFields {
		if len(c.header[f]) > 0 {
			tags = h.responseTags(c.req, c.header)
			break
		}
	}

	pol, reason := h.decide(c.req, c.reqCC, old.status, merged, c.reqTime, c.respTime)
	if reason == reasonMethod {
		// A HEAD revalidated a GET's response: the policy is the same.
		get := *c.req
		get.Method = http.MethodGet
		pol, reason = h.decide(&get, c.reqCC, old.status, merged, c.reqTime, c.respTime)
	}
	for _, f := range pol.omit {
		delete(merged, f)
	}
	value := make([]byte, fixedLen, fixedLen+len(old.body)+len(old.fields)+256)
	value = append(value, old.body...)
	value, n := appendFields(value, merged, func(string) bool { return true })
	putFixed(value, &pol, old.status, n, c.respTime.UnixMilli(), len(old.body))
	if reason == "" {
		h.set(lk.key, value, store.Params{Expires: c.respTime.UnixMilli() + pol.usefulFor()*1000, Tags: tags})
	} else {
		_ = h.st.Delete(lk.key)
	}
	if w == nil {
		return nil
	}
	fresh, _ := decodeStored(value)
	status := h.CacheName + "; fwd=" + c.fwd + "; fwd-status=304"
	if reason == "" {
		status += "; stored"
	}
	return h.writeStored(w, r, &fresh, fresh.currentAge(h.now()), status)
}

// flight is one upstream request that coalesced requests wait for.
type flight struct {
	done   chan struct{}
	stored bool // set before done is closed
	// waiters counts the requests waiting for it.
	waiters atomic.Int32
}

// flights tracks in-flight upstream requests by key.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// start returns the flight for key and whether the caller leads it (and
// must end it).
func (f *flights) start(key string) (*flight, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.m[key]; fl != nil {
		return fl, false
	}
	if f.m == nil {
		f.m = make(map[string]*flight)
	}
	fl := &flight{done: make(chan struct{})}
	f.m[key] = fl
	return fl, true
}

// end finishes a flight and wakes its waiters.
func (f *flights) end(key string, fl *flight, stored bool) {
	f.mu.Lock()
	if f.m[key] == fl {
		delete(f.m, key)
	}
	f.mu.Unlock()
	fl.stored = stored
	close(fl.done)
}

// coalesce makes concurrent misses on one key share one upstream request.
// The first one goes upstream and streams to its client; the others wait
// until its response is stored and answer from the cache, or, if it is not
// stored, go upstream themselves.
func (h *Handler) coalesce(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, reqCC *directives, lk *lookup, fwd string) error {
	fl, leader := h.fills.start(lk.primary)
	if leader {
		// The capture releases the waiters as soon as it knows the
		// response is not stored, or once it is; this is the backstop
		// if the route panics.
		defer func() {
			if fl != nil {
				select {
				case <-fl.done:
				default:
					h.fills.end(lk.primary, fl, false)
				}
			}
		}()
		return h.fetch(w, r, next, reqCC, lk, fwd, fl)
	}
	fl.waiters.Add(1)
	select {
	case <-fl.done:
	case <-r.Context().Done():
		return r.Context().Err()
	}
	if fl.stored {
		bp := keyBufPool.Get().(*[]byte)
		again := h.lookup(bp, r)
		if again.found {
			now := h.now()
			age := again.s.currentAge(now)
			if act, _ := choose(&again.s, again.item.Stale, reqCC, age); act == serveFresh {
				httpMetrics.hits.Inc()
				err := h.writeStored(w, r, &again.s, age, h.hitStatus(again.s.lifetime-age, "; detail=coalesced"))
				keyBufPool.Put(bp)
				return err
			}
		}
		keyBufPool.Put(bp)
	}
	return h.fetch(w, r, next, reqCC, lk, fwd, nil)
}

// revalidateInBackground revalidates a stale response once, detached from
// the client's request: with a copy of the request whose context outlives
// the client (but not the config) and its own response writer, so nothing
// touches the client's response after it was answered.
func (h *Handler) revalidateInBackground(r *http.Request, next caddyhttp.Handler, lk lookup) {
	fl, leader := h.revalidations.start(lk.key)
	if !leader {
		return
	}
	select {
	case h.background <- struct{}{}:
	default:
		h.revalidations.end(lk.key, fl, false)
		return
	}
	bg, cancel := h.detachedRequest(r)
	reqCC := requestDirectives(bg.Header)
	reqCC.noCache = false
	go func() {
		defer func() {
			if rec := recover(); rec != nil {
				h.logger.Error("background revalidation panicked", zap.Any("panic", rec))
			}
			cancel()
			<-h.background
			h.revalidations.end(lk.key, fl, false)
		}()
		httpMetrics.revalidations.Inc()
		if err := h.fetch(nil, bg, next, &reqCC, &lk, "stale", nil); err != nil {
			h.logger.Debug("background revalidation failed", zap.String("key", lk.key), zap.Error(err))
		}
	}()
}

// detachedRequest copies r for a background request: its context keeps
// r's values but is canceled by the revalidation timeout or when the
// config unloads, not by the client. Inside a Caddy server it gets a fresh
// replacer and variables (copied from r's), since r's are used by the
// server's logging after the client's request ends.
func (h *Handler) detachedRequest(r *http.Request) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Duration(h.RevalidateTimeout))
	stop := func() bool { return false }
	if h.ctx.Context != nil {
		stop = context.AfterFunc(h.ctx, cancel)
	}
	bg := r.Clone(ctx)
	bg.Body = http.NoBody
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		oldVars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
		bg = caddyhttp.PrepareRequest(bg, caddy.NewReplacer(), nil, srv)
		if vars, ok := bg.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
			for k, v := range oldVars {
				if _, set := vars[k]; !set {
					vars[k] = v
				}
			}
		}
	}
	return bg, func() { stop(); cancel() }
}
