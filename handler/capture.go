package handler

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/store"
)

// capture is the ResponseWriter the rest of the route writes to when the
// cache goes upstream: on a miss, to revalidate a stale response, or in
// the background. At WriteHeader it decides whether the response is
// stored and what the client gets; then it streams the body to the client
// as it arrives while keeping a copy, up to the size limit, in the buffer
// that becomes the store value.
//
// The rest of the route writes header fields into a copy of the client's
// header map, so that a 304 or 5xx that the client must not see stays out
// of the client's fields; the copy is handed over at WriteHeader.
type capture struct {
	h   *Handler
	w   http.ResponseWriter // the client's writer; nil in the background
	req *http.Request       // the request that went upstream
	// pre are the fields earlier handlers set before the cache ran;
	// unchanged ones are theirs to set again and are not stored.
	pre    http.Header
	header http.Header
	reqCC  *directives
	// cond holds the client's conditional fields, kept from upstream so
	// that a full response comes back to store; they are answered here.
	cond    http.Header
	stale   *stored // the response being revalidated, or nil
	fwd     string  // Cache-Status fwd parameter
	reqTime time.Time
	flight  *flight // coalesced requests waiting for this one, or nil
	key     string  // the primary key

	status      int
	wroteHeader bool
	respTime    time.Time
	toClient    bool // the body goes to the client
	storing     bool
	buf         *[]byte
	pol         policy
	fields      []byte
	nFields     int
	tags        []string
	vary        []string
	declaredLen int64
	reason      string
	writeErr    error

	// notModified: upstream confirmed the stale response with 304.
	// upstreamFailed: upstream answered 5xx and the stale response may
	// be served instead (stale-if-error).
	notModified, upstreamFailed bool
}

// bodyPool holds capture buffers; big ones are not kept.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

const maxPooledBody = 1 << 20

var zeroFixed [fixedLen]byte

func (c *capture) Header() http.Header { return c.header }

// WriteHeader decides, for a final status, whether the response is stored
// and what the client gets. 1xx responses pass through.
func (c *capture) WriteHeader(status int) {
	if c.wroteHeader {
		return
	}
	if status >= 100 && status <= 199 {
		if c.w != nil {
			c.copyHeader(c.w.Header())
			c.w.WriteHeader(status)
		}
		return
	}
	c.wroteHeader = true
	c.status = status
	c.respTime = c.h.now()
	if c.stale != nil {
		switch {
		case status == http.StatusNotModified:
			c.notModified = true
			c.release(false)
			return
		case status >= 500 && c.staleOnError():
			c.upstreamFailed = true
			c.release(false)
			return
		}
	}
	c.decide()
	if c.w != nil {
		c.toClient = c.writeClientHeader()
	}
}

// decide computes the store policy and, if the response is stored,
// encodes its fields and prepares the body buffer.
func (c *capture) decide() {
	c.declaredLen = -1
	if cl := c.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			c.declaredLen = n
		}
	}
	pol, reason := c.h.decide(c.req, c.reqCC, c.status, c.header, c.reqTime, c.respTime)
	if reason == "" && c.declaredLen > c.h.bodyLimit() {
		reason = reasonTooLarge
	}
	if reason == "" {
		c.pol = pol
		c.fields, c.nFields = appendFields(nil, c.header, c.keepField)
		if c.nFields >= maxFieldLines {
			reason = reasonStoreRefused
		}
	}
	if reason != "" {
		c.reason = reason
		c.release(false)
		return
	}
	c.vary, _ = varyFields(c.header)
	c.tags = c.h.responseTags(c.req, c.header)
	c.buf = bodyPool.Get().(*[]byte)
	*c.buf = append((*c.buf)[:0], zeroFixed[:]...)
	c.storing = true
}

// keepField reports whether a response field is stored.
func (c *capture) keepField(name string) bool {
	switch name {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Te", "Trailer",
		"Upgrade", "Proxy-Authenticate", "Proxy-Authorization",
		"Age", "Surrogate-Control", "Set-Cookie", "Content-Length":
		return false
	}
	if strings.HasPrefix(name, http.TrailerPrefix) ||
		(!c.h.KeepTagHeaders && slices.Contains(c.h.tagFields, name)) ||
		slices.Contains(c.pol.omit, name) {
		return false
	}
	for _, v := range c.header["Connection"] {
		if containsToken(v, name) {
			return false
		}
	}
	if pre, ok := c.pre[name]; ok && slices.Equal(pre, c.header[name]) {
		return false
	}
	return true
}

// statusValue is this response's Cache-Status entry.
func (c *capture) statusValue() string {
	var b strings.Builder
	b.WriteString(c.h.CacheName)
	b.WriteString("; fwd=")
	b.WriteString(c.fwd)
	if c.stale != nil {
		b.WriteString("; fwd-status=")
		b.WriteString(strconv.Itoa(c.status))
	}
	if c.storing {
		b.WriteString("; stored")
	} else if c.reason != "" {
		b.WriteString("; detail=")
		b.WriteString(c.reason)
	}
	return b.String()
}

// copyHeader replaces the fields of dst by the captured ones, without the
// fields meant for this cache only.
func (c *capture) copyHeader(dst http.Header) {
	clear(dst)
	for k, v := range c.header {
		dst[k] = v
	}
	delete(dst, "Surrogate-Control")
	if !c.h.KeepTagHeaders {
		for _, f := range c.h.tagFields {
			delete(dst, f)
		}
	}
}

// writeClientHeader writes the response header to the client: a 304 if
// the client's held-back conditionals match the new response. It reports
// whether the body goes to the client.
func (c *capture) writeClientHeader() bool {
	wh := c.w.Header()
	c.copyHeader(wh)
	c.h.setStatus(wh, c.statusValue())
	if c.cond != nil && c.status == http.StatusOK &&
		conditionalsMatch(c.cond, wh.Get("Etag"), wh.Get("Last-Modified"), wh.Get("Date")) {
		delete(wh, "Content-Length")
		c.w.WriteHeader(http.StatusNotModified)
		return false
	}
	c.w.WriteHeader(c.status)
	return true
}

// staleOnError reports whether the response being revalidated may be
// served because upstream failed (RFC 5861 stale-if-error).
func (c *capture) staleOnError() bool {
	return c.stale.sie > 0 && max(0, c.stale.currentAge(c.h.now())-c.stale.lifetime) < c.stale.sie
}

func (c *capture) Write(p []byte) (int, error) {
	if !c.wroteHeader {
		c.WriteHeader(http.StatusOK)
	}
	if c.storing {
		if int64(len(*c.buf)-fixedLen+len(p)) > c.h.bodyLimit() {
			c.abandon(reasonTooLarge)
		} else {
			*c.buf = append(*c.buf, p...)
		}
	}
	if !c.toClient {
		return len(p), nil
	}
	n, err := c.w.Write(p)
	if err != nil {
		c.writeErr = err
		c.abandon(reasonIncomplete)
	}
	return n, err
}

// writerOnly hides ReadFrom so that io.Copy uses Write.
type writerOnly struct{ io.Writer }

// ReadFrom lets a body that is not captured use the client writer's
// ReadFrom (sendfile for file_server).
func (c *capture) ReadFrom(src io.Reader) (int64, error) {
	if !c.wroteHeader {
		c.WriteHeader(http.StatusOK)
	}
	if rf, ok := c.w.(io.ReaderFrom); ok && c.toClient && !c.storing {
		n, err := rf.ReadFrom(src)
		if err != nil {
			c.writeErr = err
		}
		return n, err
	}
	return io.Copy(writerOnly{c}, src)
}

// FlushError flushes what reached the client so far, for streamed
// responses; a body the client does not get has nothing to flush.
func (c *capture) FlushError() error {
	if !c.wroteHeader {
		c.WriteHeader(http.StatusOK)
	}
	if !c.toClient {
		return nil
	}
	return http.NewResponseController(c.w).Flush()
}

// Flush implements http.Flusher for handlers that assert it.
func (c *capture) Flush() { _ = c.FlushError() }

// Unwrap returns the client's writer, for http.ResponseController.
func (c *capture) Unwrap() http.ResponseWriter { return c.w }

// abandon stops storing the response.
func (c *capture) abandon(reason string) {
	if !c.storing {
		return
	}
	c.storing = false
	c.reason = reason
	c.putBuf()
	c.release(false)
}

func (c *capture) putBuf() {
	if c.buf != nil && cap(*c.buf) <= maxPooledBody {
		bodyPool.Put(c.buf)
	}
	c.buf = nil
}

// release lets coalesced requests go on, once.
func (c *capture) release(stored bool) {
	if c.flight != nil {
		c.h.fills.end(c.key, c.flight, stored)
		c.flight = nil
	}
}

// finish runs after the rest of the route returned err: it stores the
// response if it is complete and may be stored, and reports whether it
// was.
func (c *capture) finish(err error) bool {
	defer c.putBuf()
	if c.storing && (err != nil || c.writeErr != nil) {
		c.abandon(reasonIncomplete)
	}
	if !c.storing {
		c.release(false)
		return false
	}
	bodyLen := len(*c.buf) - fixedLen
	if c.declaredLen >= 0 && int64(bodyLen) != c.declaredLen {
		c.abandon(reasonIncomplete)
		return false
	}
	buf := append(*c.buf, c.fields...)
	n := c.nFields
	if c.status != http.StatusNoContent {
		buf = appendField(buf, "Content-Length", strconv.Itoa(bodyLen))
		n++
	}
	*c.buf = buf
	putFixed(buf, &c.pol, c.status, n, c.respTime.UnixMilli(), bodyLen)
	expires := c.respTime.UnixMilli() + c.pol.usefulFor()*1000
	ok := c.h.put(c.req, c.key, c.vary, buf, expires, c.tags)
	c.release(ok)
	return ok
}

// put stores a response entry under the key of its variant, and the vary
// index under the primary key if the response varies.
func (h *Handler) put(r *http.Request, primary string, vary []string, value []byte, expires int64, tags []string) bool {
	key := primary
	if len(vary) > 0 {
		index := encodeVaryIndex(vary)
		vi, _ := decodeVaryIndex(index)
		key = string(appendVariant(nil, primary, r, vi))
		old, ok := h.st.Get(primary)
		if !ok || !sameVaryFields(old.Value, vary) || (old.Expires != 0 && old.Expires < expires) {
			if !h.set(primary, index, store.Params{Expires: expires, Tags: []string{urlTag(r)}}) {
				return false
			}
		}
	}
	if !h.set(key, value, store.Params{Expires: expires, Tags: tags}) {
		return false
	}
	httpMetrics.stores.Inc()
	return true
}

// set writes to the store; a refusal (too large, too many tags) is logged,
// and a value too large lowers what later misses capture.
func (h *Handler) set(key string, value []byte, p store.Params) bool {
	_, err := h.st.Set(key, value, p)
	if err == nil {
		return true
	}
	var lim *store.LimitError
	if errors.As(err, &lim) && errors.Is(err, store.ErrValueTooLarge) {
		h.itemLimit.Store(lim.Max)
	}
	h.logger.Debug("response not stored", zap.String("key", key), zap.Error(err))
	return false
}
