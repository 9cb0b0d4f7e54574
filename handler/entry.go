package handler

import (
	"encoding/binary"
	"math"
	"net/http"
	"unsafe"
)

// A stored response is one store value: a fixed header, the body, then the
// header fields. The body comes before the fields so that a miss can
// capture the body into its final buffer while it streams and append the
// fields at the end, and a hit can write the body straight from the store's
// immutable value. All integers are little-endian.
//
//	offset size
//	0      1    kind: kindResponse
//	1      1    format version
//	2      2    flags (flagMustRevalidate, ...)
//	4      2    status code
//	6      2    number of header field lines
//	8      8    response time, Unix ms
//	16     4    corrected initial age, seconds
//	20     4    freshness lifetime, seconds
//	24     4    stale-while-revalidate window, seconds
//	28     4    stale-if-error window, seconds
//	32     4    body length
//	36     4    reserved, 0
//	40     ...  body, then the field lines
//
// A field line is a one-byte index into commonFields (0: the name follows
// as a uvarint length and bytes), then the value as a uvarint length and
// bytes. Lines of one field are adjacent.
//
// A vary index, stored under a URL's primary key when its responses carry
// Vary, is kindVary, the version, a uint16 count and the Vary field names,
// each a uvarint length and bytes.
const (
	kindResponse  = 'R'
	kindVary      = 'V'
	formatVersion = 1
	fixedLen      = 40
)

// Entry flags.
const (
	flagMustRevalidate = 1 << iota
	flagNoCache
	flagAuthOK
)

// commonFields are field names stored as a one-byte index. The order is
// part of the format: append only.
var commonFields = [...]string{
	"", // a literal name follows
	"Content-Type", "Content-Length", "Date", "Etag", "Last-Modified",
	"Cache-Control", "Expires", "Vary", "Content-Encoding", "Content-Language",
	"Content-Disposition", "Content-Location", "Location", "Accept-Ranges",
	"Access-Control-Allow-Origin", "Strict-Transport-Security",
	"X-Content-Type-Options", "Content-Security-Policy", "X-Frame-Options",
	"Referrer-Policy", "Link", "Server", "Cdn-Cache-Control", "Cache-Status",
	"X-Powered-By", "Permissions-Policy", "Cross-Origin-Resource-Policy",
}

var commonFieldIndex = func() map[string]byte {
	m := make(map[string]byte, len(commonFields))
	for i, f := range commonFields[1:] {
		m[f] = byte(i + 1)
	}
	return m
}()

// stored is a decoded response entry. body and fields alias the store's
// immutable value.
type stored struct {
	flags                          uint16
	status                         int
	nFields                        int
	respTime                       int64 // Unix ms
	initialAge, lifetime, swr, sie int64 // seconds
	body, fields                   []byte
}

// decodeStored parses a response entry; ok is false for anything else,
// including a value that some other client wrote under an HTTP key.
func decodeStored(v []byte) (s stored, ok bool) {
	if len(v) < fixedLen || v[0] != kindResponse || v[1] != formatVersion {
		return s, false
	}
	le := binary.LittleEndian
	bodyLen := int(le.Uint32(v[32:]))
	if bodyLen > len(v)-fixedLen {
		return s, false
	}
	s = stored{
		flags:      le.Uint16(v[2:]),
		status:     int(le.Uint16(v[4:])),
		nFields:    int(le.Uint16(v[6:])),
		respTime:   int64(le.Uint64(v[8:])),
		initialAge: int64(le.Uint32(v[16:])),
		lifetime:   int64(le.Uint32(v[20:])),
		swr:        int64(le.Uint32(v[24:])),
		sie:        int64(le.Uint32(v[28:])),
		body:       v[fixedLen : fixedLen+bodyLen],
		fields:     v[fixedLen+bodyLen:],
	}
	if s.status < 100 || s.status > 999 {
		return s, false
	}
	// Check every field line once so that the hit path can trust them.
	it := fieldIter{b: s.fields}
	n := 0
	for it.next() {
		n++
	}
	return s, !it.bad && n == s.nFields
}

// putFixed writes the fixed header of a response entry into b[:fixedLen].
func putFixed(b []byte, p *policy, status, nFields int, respTime int64, bodyLen int) {
	le := binary.LittleEndian
	b[0], b[1] = kindResponse, formatVersion
	var flags uint16
	if p.mustRevalidate {
		flags |= flagMustRevalidate
	}
	if p.noCache {
		flags |= flagNoCache
	}
	if p.authOK {
		flags |= flagAuthOK
	}
	le.PutUint16(b[2:], flags)
	le.PutUint16(b[4:], uint16(status))
	le.PutUint16(b[6:], uint16(nFields))
	le.PutUint64(b[8:], uint64(respTime))
	le.PutUint32(b[16:], clampU32(p.initialAge))
	le.PutUint32(b[20:], clampU32(p.lifetime))
	le.PutUint32(b[24:], clampU32(p.staleWhileRevalidate))
	le.PutUint32(b[28:], clampU32(p.staleIfError))
	le.PutUint32(b[32:], uint32(bodyLen))
	le.PutUint32(b[36:], 0)
}

func clampU32(n int64) uint32 {
	return uint32(min(max(n, 0), math.MaxUint32))
}

// appendField appends one field line.
func appendField(dst []byte, name, value string) []byte {
	if i, ok := commonFieldIndex[name]; ok {
		dst = append(dst, i)
	} else {
		dst = append(dst, 0)
		dst = binary.AppendUvarint(dst, uint64(len(name)))
		dst = append(dst, name...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

// maxFieldLines is the most field lines an entry holds (the count is a
// uint16); a response with more is not stored.
const maxFieldLines = math.MaxUint16

// appendFields appends every line of hdr for which keep returns true and
// returns the number of lines.
func appendFields(dst []byte, hdr http.Header, keep func(name string) bool) ([]byte, int) {
	n := 0
	for name, values := range hdr {
		if !keep(name) {
			continue
		}
		for _, v := range values {
			dst = appendField(dst, name, v)
			n++
		}
	}
	return dst, n
}

// fieldIter walks the field lines of an entry. The strings it returns
// alias the entry's bytes, which the store never modifies.
type fieldIter struct {
	b           []byte
	name, value string
	bad         bool
}

// next advances to the next field line; it returns false at the end or at
// a malformed line.
func (it *fieldIter) next() bool {
	if len(it.b) == 0 || it.bad {
		return false
	}
	id := it.b[0]
	b := it.b[1:]
	switch {
	case id == 0:
		var name []byte
		if name, b = splitLen(b); len(name) == 0 {
			it.bad = true
			return false
		}
		it.name = bytesString(name)
	case int(id) < len(commonFields):
		it.name = commonFields[id]
	default:
		it.bad = true
		return false
	}
	value, rest := splitLen(b)
	if value == nil {
		it.bad = true
		return false
	}
	it.value = bytesString(value)
	it.b = rest
	return true
}

// splitLen splits a uvarint-length-prefixed byte string off b; it returns
// a nil slice if b is too short.
func splitLen(b []byte) (s, rest []byte) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, b
	}
	return b[k : k+int(n) : k+int(n)], b[k+int(n):]
}

// bytesString returns b as a string without copying; b must never change,
// which holds for store values.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// field returns the first value of the named field of an entry.
func (s *stored) field(name string) string {
	for it := (fieldIter{b: s.fields}); it.next(); {
		if it.name == name {
			return it.value
		}
	}
	return ""
}

// header decodes the entry's fields into a new header map.
func (s *stored) header() http.Header {
	h := make(http.Header, s.nFields)
	for it := (fieldIter{b: s.fields}); it.next(); {
		h[it.name] = append(h[it.name], it.value)
	}
	return h
}

// encodeVaryIndex returns a vary index value for the given field names.
func encodeVaryIndex(fields []string) []byte {
	b := make([]byte, 4, 4+16*len(fields))
	b[0], b[1] = kindVary, formatVersion
	binary.LittleEndian.PutUint16(b[2:], uint16(len(fields)))
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// varyIndex is a decoded vary index; names are read with next.
type varyIndex struct {
	n    int
	rest []byte
}

// decodeVaryIndex parses a vary index value.
func decodeVaryIndex(v []byte) (varyIndex, bool) {
	if len(v) < 4 || v[0] != kindVary || v[1] != formatVersion {
		return varyIndex{}, false
	}
	return varyIndex{n: int(binary.LittleEndian.Uint16(v[2:])), rest: v[4:]}, true
}

// next returns the next field name; ok is false at the end or if the index
// is malformed.
func (vi *varyIndex) next() (name string, ok bool) {
	if vi.n == 0 {
		return "", false
	}
	b, rest := splitLen(vi.rest)
	if len(b) == 0 {
		return "", false
	}
	vi.n--
	vi.rest = rest
	return bytesString(b), true
}

// sameVaryFields reports whether the vary index value v lists exactly
// fields.
func sameVaryFields(v []byte, fields []string) bool {
	vi, ok := decodeVaryIndex(v)
	if !ok || vi.n != len(fields) {
		return false
	}
	for _, f := range fields {
		name, ok := vi.next()
		if !ok || name != f {
			return false
		}
	}
	return true
}
