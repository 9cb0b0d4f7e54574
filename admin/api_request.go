package admin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/store"
)

// Request bodies of the JSON API. Unknown fields are refused, so that a
// misspelt option (ttl for ttl_ms) is an error rather than silently
// ignored.

// writeRequest is the body of POST /put and /add and an item of
// /keys/bulk/put.
type writeRequest struct {
	Key   string  `json:"key"`
	Value *string `json:"value"`
	// Encoding is "base64" if Value is base64, for binary values.
	Encoding   string   `json:"encoding,omitempty"`
	Tags       []string `json:"tags,omitempty"`
	TTLMs      *int64   `json:"ttl_ms,omitempty"`
	TTLSeconds *int64   `json:"ttl_seconds,omitempty"`
}

// counterRequest is the body of POST /incr and /decr.
type counterRequest struct {
	Key        string   `json:"key"`
	By         *int64   `json:"by,omitempty"`
	Tags       []string `json:"tags,omitempty"`
	TTLMs      *int64   `json:"ttl_ms,omitempty"`
	TTLSeconds *int64   `json:"ttl_seconds,omitempty"`
}

type keyRequest struct {
	Key string `json:"key"`
}

type tagsRequest struct {
	Tag  string   `json:"tag,omitempty"`
	Tags []string `json:"tags,omitempty"`
}

type keysRequest struct {
	Keys     []string `json:"keys"`
	Encoding string   `json:"encoding,omitempty"`
}

type bulkPutRequest struct {
	Items []writeRequest `json:"items"`
	// Encoding is the default encoding of the items' values.
	Encoding string `json:"encoding,omitempty"`
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type passwordRequest struct {
	Username    string `json:"username,omitempty"`
	NewPassword string `json:"new_password"`
}

// maxTTLMs bounds TTLs (100 years) so that expiry times cannot overflow.
const maxTTLMs = 100 * 365 * 24 * 3600 * 1000

const encodingBase64 = "base64"

// requestError is a request the API refuses, with its status.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

// apiError is the refusal as an error of an admin API route.
func (e *requestError) apiError() error {
	return caddy.APIError{HTTPStatus: e.status, Err: errors.New(e.msg)}
}

// reply is the answer to the refused request.
func (e *requestError) reply() (int, any) { return e.status, errorBody{Error: e.msg} }

func badRequest(format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// errEmptyBody is decodeJSON's error for a body without JSON.
var errEmptyBody = badRequest("invalid JSON: empty body")

// decodeJSON reads one JSON object from r into v; anything after it is an
// error. It reports malformed JSON, a field of the wrong type, an unknown
// field and a body over the size limit with a message for the client.
func decodeJSON(r io.Reader, v any) *requestError {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err = dec.Token(); err == io.EOF {
			return nil
		}
		if err == nil {
			return badRequest("invalid JSON: unexpected data after the object")
		}
	}
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return &requestError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body larger than %d bytes", maxErr.Limit)}
	case err == io.EOF:
		return errEmptyBody
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("invalid JSON: unexpected end of the body")
	case errors.As(err, &syntaxErr):
		return badRequest("invalid JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return badRequest("invalid JSON: field %q must be %s, not %s", typeErr.Field, jsonType(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &typeErr):
		return badRequest("invalid JSON: the body must be an object, not %s", typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("invalid JSON: unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return badRequest("invalid JSON: %v", err)
	}
}

// jsonType names a Go kind as the JSON type a client should send.
func jsonType(kind string) string {
	switch kind {
	case "string", "ptr":
		return "a string"
	case "int64", "int", "uint64", "uint32":
		return "an integer"
	case "slice":
		return "an array"
	case "bool":
		return "true or false"
	default:
		return kind
	}
}

// decodeValue returns the bytes of a value in the given encoding ("" or
// "base64").
func decodeValue(value, encoding string) ([]byte, *requestError) {
	switch encoding {
	case "":
		return []byte(value), nil
	case encodingBase64:
		b, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return nil, badRequest("value is not valid base64: %v", err)
		}
		return b, nil
	default:
		return nil, badRequest("unknown encoding %q (want \"base64\" or none)", encoding)
	}
}

// checkEncoding validates an encoding of a response.
func checkEncoding(encoding string) *requestError {
	if encoding != "" && encoding != encodingBase64 {
		return badRequest("unknown encoding %q (want \"base64\" or none)", encoding)
	}
	return nil
}

// ttl returns the TTL in ms from ttl_ms or, if it is absent, ttl_seconds;
// 0 means none.
func ttl(ms, seconds *int64) (int64, *requestError) {
	switch {
	case ms != nil:
		if *ms < 0 || *ms > maxTTLMs {
			return 0, badRequest("ttl_ms must be between 0 and %d", int64(maxTTLMs))
		}
		return *ms, nil
	case seconds != nil:
		if *seconds < 0 || *seconds > maxTTLMs/1000 {
			return 0, badRequest("ttl_seconds must be between 0 and %d", int64(maxTTLMs/1000))
		}
		return *seconds * 1000, nil
	}
	return 0, nil
}

// ttlEcho is the ttl_ms of a response: the TTL applied, null for none.
func ttlEcho(ttlMs int64) *int64 {
	if ttlMs == 0 {
		return nil
	}
	return &ttlMs
}

// entry is a validated writeRequest.
type entry struct {
	key   string
	value []byte
	tags  []string
	ttlMs int64
}

// parse validates a write request; defaultEncoding applies when the
// request has none. Limits of the store (key length, value size, tag
// count) are checked by the store itself.
func (wr *writeRequest) parse(defaultEncoding string) (entry, *requestError) {
	if wr.Key == "" {
		return entry{}, badRequest("key is required")
	}
	if wr.Value == nil {
		return entry{}, badRequest("value is required")
	}
	encoding := wr.Encoding
	if encoding == "" {
		encoding = defaultEncoding
	}
	value, rerr := decodeValue(*wr.Value, encoding)
	if rerr != nil {
		return entry{}, rerr
	}
	ttlMs, rerr := ttl(wr.TTLMs, wr.TTLSeconds)
	if rerr != nil {
		return entry{}, rerr
	}
	return entry{key: wr.Key, value: value, tags: wr.Tags, ttlMs: ttlMs}, nil
}

// storeParams returns the write parameters of e for st's clock.
func (e entry) storeParams(st *store.Store) store.Params {
	p := store.Params{Tags: e.tags}
	if e.ttlMs > 0 {
		p.Expires = st.Now() + e.ttlMs
	}
	return p
}
