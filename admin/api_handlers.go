package admin

import (
	"encoding/base64"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/store"
)

// The cache routes of the JSON API. Each returns the status and the body.

// putResponse is the body of POST /put and /add.
type putResponse struct {
	OK    bool   `json:"ok"`
	Added *bool  `json:"added,omitempty"`
	TTLMs *int64 `json:"ttl_ms"`
}

// put is POST /put: store a value whether or not the key exists.
func (h *JSONAPI) put(c *call) (int, any) {
	var req writeRequest
	if rerr := decodeJSON(c.r.Body, &req); rerr != nil {
		return rerr.reply()
	}
	e, rerr := req.parse("")
	if rerr != nil {
		return rerr.reply()
	}
	if _, err := h.store.Set(e.key, e.value, e.storeParams(h.store)); err != nil {
		return h.storeError(err)
	}
	return http.StatusOK, putResponse{OK: true, TTLMs: ttlEcho(e.ttlMs)}
}

// add is POST /add: store a value only if the key has none. An existing
// key is not an error: the answer says added false, ttl_ms null.
func (h *JSONAPI) add(c *call) (int, any) {
	var req writeRequest
	if rerr := decodeJSON(c.r.Body, &req); rerr != nil {
		return rerr.reply()
	}
	e, rerr := req.parse("")
	if rerr != nil {
		return rerr.reply()
	}
	added := true
	_, err := h.store.Add(e.key, e.value, e.storeParams(h.store))
	switch {
	case errors.Is(err, store.ErrExists):
		added = false
		e.ttlMs = 0
	case err != nil:
		return h.storeError(err)
	}
	return http.StatusOK, putResponse{OK: true, Added: &added, TTLMs: ttlEcho(e.ttlMs)}
}

// counterResponse is the body of POST /incr and /decr.
type counterResponse struct {
	OK    bool   `json:"ok"`
	Value int64  `json:"value"`
	TTLMs *int64 `json:"ttl_ms"`
}

func (h *JSONAPI) incr(c *call) (int, any) { return h.count(c, 1) }
func (h *JSONAPI) decr(c *call) (int, any) { return h.count(c, -1) }

// count is POST /incr (sign 1) and /decr (sign -1): add by (default 1) to
// a signed 64-bit integer value. An absent key is created with the value
// ±by and the given tags and TTL; an existing one keeps its own.
func (h *JSONAPI) count(c *call, sign int64) (int, any) {
	var req counterRequest
	if rerr := decodeJSON(c.r.Body, &req); rerr != nil {
		return rerr.reply()
	}
	if req.Key == "" {
		return http.StatusBadRequest, errorBody{Error: "key is required"}
	}
	by := int64(1)
	if req.By != nil {
		by = *req.By
	}
	if by == math.MinInt64 {
		return http.StatusBadRequest, errorBody{Error: "by is out of range"}
	}
	ttlMs, rerr := ttl(req.TTLMs, req.TTLSeconds)
	if rerr != nil {
		return rerr.reply()
	}
	e := entry{key: req.Key, tags: req.Tags, ttlMs: ttlMs}
	n, err := h.store.IncrBy(req.Key, sign*by, e.storeParams(h.store))
	if err != nil {
		return h.storeError(err)
	}
	return http.StatusOK, counterResponse{OK: true, Value: n, TTLMs: ttlEcho(ttlMs)}
}

// notFound is the body of a miss, exactly as TagCache answers it.
var notFound = map[string]string{"error": "not_found"}

// valueResponse is the body of GET /get/{key}.
type valueResponse struct {
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
}

// get is GET /get/{key}[?encoding=base64]. A value that is not valid
// UTF-8 cannot travel in a JSON string, so it is sent in base64 even if
// the client did not ask, and the answer says so.
func (h *JSONAPI) get(c *call) (int, any) {
	var want string
	if c.r.URL.RawQuery != "" {
		want = c.r.URL.Query().Get("encoding")
		if rerr := checkEncoding(want); rerr != nil {
			return rerr.reply()
		}
	}
	if c.key == "" {
		return http.StatusBadRequest, errorBody{Error: "key is required: GET /get/{key}"}
	}
	it, ok := h.store.Get(c.key)
	if !ok {
		return http.StatusNotFound, notFound
	}
	value, encoding := encodeValue(it.Value, want)
	return http.StatusOK, valueResponse{Value: value, Encoding: encoding}
}

// encodeValue returns a value as a JSON string and its encoding: base64
// if asked for or needed.
func encodeValue(v []byte, want string) (string, string) {
	if want == encodingBase64 || !utf8.Valid(v) {
		return base64.StdEncoding.EncodeToString(v), encodingBase64
	}
	return string(v), ""
}

// keysResponse is the body of the key listings.
type keysResponse struct {
	Keys     []string `json:"keys"`
	Encoding string   `json:"encoding,omitempty"`
	// Cursor continues GET /keys; "0" when the walk is complete.
	Cursor string `json:"cursor,omitempty"`
}

// newKeysResponse lists keys, in base64 if asked for or if one of them is
// not valid UTF-8.
func newKeysResponse(keys []string, want string) keysResponse {
	if keys == nil {
		keys = []string{}
	}
	if want != encodingBase64 {
		for _, k := range keys {
			if !utf8.ValidString(k) {
				want = encodingBase64
				break
			}
		}
	}
	if want == encodingBase64 {
		for i, k := range keys {
			keys[i] = base64.StdEncoding.EncodeToString([]byte(k))
		}
	}
	return keysResponse{Keys: keys, Encoding: want}
}

// queryInt parses a non-negative integer query parameter, def if absent,
// at most limit.
func queryInt(q url.Values, name string, def, limit int) (int, *requestError) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > limit {
		return 0, badRequest("%s must be an integer between 0 and %d", name, limit)
	}
	return n, nil
}

// keysByTag is GET /keys-by-tag?tag=&limit=: the keys carrying a tag,
// all of them if there is no limit (or it is 0).
func (h *JSONAPI) keysByTag(c *call) (int, any) {
	q := c.r.URL.Query()
	tag := q.Get("tag")
	if tag == "" {
		return http.StatusBadRequest, errorBody{Error: "tag is required: GET /keys-by-tag?tag=<tag>"}
	}
	limit, rerr := queryInt(q, "limit", 0, math.MaxInt)
	if rerr == nil {
		rerr = checkEncoding(q.Get("encoding"))
	}
	if rerr != nil {
		return rerr.reply()
	}
	return http.StatusOK, newKeysResponse(h.store.KeysByTag(tag, limit), q.Get("encoding"))
}

// Bounds of GET /keys and GET /tags.
const (
	defaultScanLimit = 100
	maxScanLimit     = 10000
	defaultTagsLimit = 1000
)

// keys is GET /keys?prefix=&cursor=&limit=: a resumable walk over the live
// keys, as Redis's SCAN: pass the returned cursor to continue; "0" means
// done. A page may hold more keys than limit.
func (h *JSONAPI) keys(c *call) (int, any) {
	page, rerr := keysPage(h.store, c.r.URL.Query())
	if rerr != nil {
		return rerr.reply()
	}
	return http.StatusOK, page
}

// keysPage reads the page of a walk over st's keys that the query asks for
// (prefix, cursor, limit, encoding).
func keysPage(st *store.Store, q url.Values) (keysResponse, *requestError) {
	limit, rerr := queryInt(q, "limit", defaultScanLimit, maxScanLimit)
	if rerr == nil {
		rerr = checkEncoding(q.Get("encoding"))
	}
	if rerr != nil {
		return keysResponse{}, rerr
	}
	cursor, err := strconv.ParseUint(q.Get("cursor"), 10, 64)
	if err != nil && q.Get("cursor") != "" {
		return keysResponse{}, badRequest("cursor must be a cursor returned by a previous page")
	}
	var match func(string) bool
	if prefix := q.Get("prefix"); prefix != "" {
		match = func(k string) bool { return strings.HasPrefix(k, prefix) }
	}
	keys, next := st.Scan(cursor, max(limit, 1), match)
	page := newKeysResponse(keys, q.Get("encoding"))
	page.Cursor = strconv.FormatUint(next, 10)
	return page, nil
}

// tags is GET /tags?limit=: tags with their entry counts (default 1000).
func (h *JSONAPI) tags(c *call) (int, any) {
	limit, rerr := queryInt(c.r.URL.Query(), "limit", defaultTagsLimit, math.MaxInt)
	if rerr != nil {
		return rerr.reply()
	}
	tags := h.store.ListTags(limit)
	if tags == nil {
		tags = []store.TagInfo{}
	}
	return http.StatusOK, map[string]any{"tags": tags}
}

// invalidateResponse is TagCache's answer to an invalidation.
type invalidateResponse struct {
	Success bool `json:"success"`
	Count   *int `json:"count,omitempty"`
}

// invalidateKey is POST /invalidate-key: success says whether the key
// existed.
func (h *JSONAPI) invalidateKey(c *call) (int, any) {
	var req keyRequest
	if rerr := decodeJSON(c.r.Body, &req); rerr != nil {
		return rerr.reply()
	}
	if req.Key == "" {
		return http.StatusBadRequest, errorBody{Error: "key is required"}
	}
	return http.StatusOK, invalidateResponse{Success: h.store.Delete(req.Key) == nil}
}

// invalidateTag is POST /invalidate-tag with "tag" or "tags" (or both):
// remove every entry carrying any of them. As TagCache's, success says
// whether anything was removed.
func (h *JSONAPI) invalidateTag(c *call) (int, any) {
	var req tagsRequest
	if rerr := decodeJSON(c.r.Body, &req); rerr != nil {
		return rerr.reply()
	}
	tags := req.Tags
	if req.Tag != "" {
		tags = append(tags, req.Tag)
	}
	if len(tags) == 0 {
		return http.StatusBadRequest, errorBody{Error: `"tag" or "tags" is required`}
	}
	n := h.store.InvalidateTags(tags...)
	return http.StatusOK, invalidateResponse{Success: n > 0, Count: &n}
}

// flush is POST /flush: remove every entry of the store; count is how many
// there were.
func (h *JSONAPI) flush(*call) (int, any) {
	n := int(h.store.Stats().Items)
	h.store.Flush(0)
	return http.StatusOK, invalidateResponse{Success: true, Count: &n}
}

// statsResponse is TagCache's stats (puts, hit_ratio) and the store's own.
type statsResponse struct {
	Store string `json:"store"`
	store.Stats
	Puts     uint64  `json:"puts"`
	HitRatio float64 `json:"hit_ratio"`
}

func (h *JSONAPI) stats(*call) (int, any) {
	s := h.store.Stats()
	resp := statsResponse{Store: h.storeName(), Stats: s, Puts: s.Sets}
	if s.Hits+s.Misses > 0 {
		resp.HitRatio = float64(s.Hits) / float64(s.Hits+s.Misses)
	}
	return http.StatusOK, resp
}

func (h *JSONAPI) storeName() string {
	if h.Store == "" {
		return "default"
	}
	return h.Store
}

// bulkItem is an entry of POST /keys/bulk/get.
type bulkItem struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
	// TTLMs is the time left, null for none.
	TTLMs *int64   `json:"ttl_ms"`
	Tags  []string `json:"tags"`
}

// bulkGet is POST /keys/bulk/get {"keys":[...]}: the entries found, with
// their remaining TTL and tags; misses are left out.
func (h *JSONAPI) bulkGet(c *call) (int, any) {
	var req keysRequest
	if rerr := decodeJSON(c.r.Body, &req); rerr != nil {
		return rerr.reply()
	}
	if rerr := checkEncoding(req.Encoding); rerr != nil {
		return rerr.reply()
	}
	items := make([]bulkItem, 0, len(req.Keys))
	for _, k := range req.Keys {
		it, ok := h.store.Get(k)
		if !ok {
			continue
		}
		item := bulkItem{Key: k, Tags: it.Tags}
		item.Value, item.Encoding = encodeValue(it.Value, req.Encoding)
		if it.Expires > 0 {
			item.TTLMs = ttlEcho(max(it.Expires-h.store.Now(), 1))
		}
		if item.Tags == nil {
			item.Tags = []string{}
		}
		items = append(items, item)
	}
	return http.StatusOK, map[string]any{"items": items}
}

// bulkPutError reports an item that the store refused.
type bulkPutError struct {
	Index int    `json:"index"`
	Key   string `json:"key"`
	Error string `json:"error"`
}

// bulkPutResponse is the body of POST /keys/bulk/put.
type bulkPutResponse struct {
	OK     bool           `json:"ok"`
	Stored int            `json:"stored"`
	Errors []bulkPutError `json:"errors,omitempty"`
}

// bulkPut is POST /keys/bulk/put {"items":[...]}: each item as POST /put.
// A malformed item refuses the whole request before anything is stored;
// an item the store refuses (too large, say) is reported and the others
// are stored.
func (h *JSONAPI) bulkPut(c *call) (int, any) {
	var req bulkPutRequest
	if rerr := decodeJSON(c.r.Body, &req); rerr != nil {
		return rerr.reply()
	}
	if rerr := checkEncoding(req.Encoding); rerr != nil {
		return rerr.reply()
	}
	entries := make([]entry, len(req.Items))
	for i := range req.Items {
		e, rerr := req.Items[i].parse(req.Encoding)
		if rerr != nil {
			return rerr.status, errorf("item %d: %s", i, rerr.msg)
		}
		entries[i] = e
	}
	resp := bulkPutResponse{OK: true}
	for i, e := range entries {
		if _, err := h.store.Set(e.key, e.value, e.storeParams(h.store)); err != nil {
			resp.OK = false
			resp.Errors = append(resp.Errors, bulkPutError{Index: i, Key: e.key, Error: err.Error()})
			continue
		}
		resp.Stored++
	}
	return http.StatusOK, resp
}

// bulkDelete is POST /keys/bulk/delete {"keys":[...]}: count is how many
// existed.
func (h *JSONAPI) bulkDelete(c *call) (int, any) {
	var req keysRequest
	if rerr := decodeJSON(c.r.Body, &req); rerr != nil {
		return rerr.reply()
	}
	n := 0
	for _, k := range req.Keys {
		if h.store.Delete(k) == nil {
			n++
		}
	}
	return http.StatusOK, invalidateResponse{Success: true, Count: &n}
}

// snapshot is POST /snapshot: write the store's snapshot now and answer its
// stats; 409 if the store has no snapshot configured.
func (h *JSONAPI) snapshot(*call) (int, any) {
	st, err := h.app.SaveSnapshot(h.Store)
	if err != nil {
		return http.StatusConflict, errorBody{Error: err.Error()}
	}
	return http.StatusOK, st
}

// storeError answers an error of the store: 413 for a value over
// max_item_size, 409 for incr/decr on a value that is not an integer or
// would overflow, 400 for other limits, 500 for anything else.
func (h *JSONAPI) storeError(err error) (int, any) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, store.ErrValueTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, store.ErrNotNumeric), errors.Is(err, store.ErrOverflow):
		status = http.StatusConflict
	case errors.Is(err, store.ErrEmptyKey), errors.Is(err, store.ErrKeyTooLong),
		errors.Is(err, store.ErrEmptyTag), errors.Is(err, store.ErrTagTooLong), errors.Is(err, store.ErrTooManyTags):
		status = http.StatusBadRequest
	default:
		h.logger.Error("store error", zap.Error(err))
	}
	return status, errorBody{Error: err.Error()}
}
