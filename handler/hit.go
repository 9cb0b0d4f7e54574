package handler

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// fieldSet says which stored fields a response to the client carries.
type fieldSet uint8

const (
	allFields         fieldSet = iota
	partialFields              // a 206: everything but Content-Length
	notModifiedFields          // a 304: the fields RFC 9110 section 15.4.5 lists
)

// notModifiedField reports whether a 304 carries the named field.
func notModifiedField(name string) bool {
	switch name {
	case "Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Vary", "Last-Modified", "Cdn-Cache-Control":
		return true
	}
	return false
}

// writeStored answers r from a stored response: a 304 if the client's
// conditionals match, a 206 or 416 for a Range request, the full response
// otherwise. age is the response's current age in seconds and status the
// Cache-Status value. It writes the body straight from the store's
// immutable value.
func (h *Handler) writeStored(w http.ResponseWriter, r *http.Request, s *stored, age int64, status string) error {
	hdr := w.Header()
	if s.status/100 == 2 && notModified(r, s) {
		h.setFields(hdr, s, notModifiedFields, age, status)
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if s.status == http.StatusOK && r.Method == http.MethodGet && len(r.Header["Range"]) > 0 {
		size := int64(len(s.body))
		start, end, res := parseRange(r.Header.Get("Range"), size)
		if res != rangeIgnore && !ifRangeMatches(r.Header.Get("If-Range"), s) {
			res = rangeIgnore
		}
		switch res {
		case rangeUnsatisfiable:
			hdr["Content-Range"] = []string{"bytes */" + strconv.FormatInt(size, 10)}
			h.setStatus(hdr, status)
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return nil
		case rangeSatisfiable:
			h.setFields(hdr, s, partialFields, age, status)
			hdr["Content-Range"] = []string{"bytes " + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(end, 10) + "/" + strconv.FormatInt(size, 10)}
			hdr["Content-Length"] = []string{strconv.FormatInt(end-start+1, 10)}
			w.WriteHeader(http.StatusPartialContent)
			_, err := w.Write(s.body[start : end+1])
			return err
		}
	}
	h.setFields(hdr, s, allFields, age, status)
	w.WriteHeader(s.status)
	if r.Method == http.MethodHead || len(s.body) == 0 {
		return nil
	}
	_, err := w.Write(s.body)
	return err
}

// setFields puts the stored fields into hdr, replacing what earlier
// handlers set under the same names, then Age and Cache-Status. The values
// alias the stored entry; one slice backs them all, each field's part
// capped so that an append by a later handler cannot overwrite its
// neighbour.
func (h *Handler) setFields(hdr http.Header, s *stored, set fieldSet, age int64, status string) {
	vals := make([]string, s.nFields+2)
	i, start := 0, 0
	name := ""
	for it := (fieldIter{b: s.fields}); it.next(); {
		switch {
		case set == partialFields && it.name == "Content-Length",
			set == notModifiedFields && !notModifiedField(it.name):
			continue
		}
		if it.name != name && i > start {
			hdr[name] = vals[start:i:i]
			start = i
		}
		name = it.name
		vals[i] = it.value
		i++
	}
	if i > start {
		hdr[name] = vals[start:i:i]
	}
	vals[i] = strconv.FormatInt(age, 10)
	hdr["Age"] = vals[i : i+1 : i+1]
	if existing := hdr[h.statusField]; len(existing) > 0 {
		// An upstream cache's entry comes first (RFC 9211 section 2).
		hdr[h.statusField] = append(existing[:len(existing):len(existing)], status)
		return
	}
	vals[i+1] = status
	hdr[h.statusField] = vals[i+1 : i+2 : i+2]
}

// setStatus sets the Cache-Status field, after any upstream cache's.
func (h *Handler) setStatus(hdr http.Header, status string) {
	if existing := hdr[h.statusField]; len(existing) > 0 {
		hdr[h.statusField] = append(existing[:len(existing):len(existing)], status)
		return
	}
	hdr[h.statusField] = []string{status}
}

// notModified reports whether the client's conditionals match the stored
// response, so that a 304 answers it.
func notModified(r *http.Request, s *stored) bool {
	if len(r.Header["If-None-Match"]) == 0 && len(r.Header["If-Modified-Since"]) == 0 {
		return false
	}
	return conditionalsMatch(r.Header, s.field("Etag"), s.field("Last-Modified"), s.field("Date"))
}

// conditionalsMatch evaluates a GET's If-None-Match (weak comparison) or,
// without it, If-Modified-Since against Last-Modified or, lacking that,
// Date (RFC 9110 section 13.2.2, RFC 9111 section 4.3.2).
func conditionalsMatch(req http.Header, etag, lastModified, date string) bool {
	if inm := req["If-None-Match"]; len(inm) > 0 {
		return etagMatches(inm, etag)
	}
	since, err := http.ParseTime(req.Get("If-Modified-Since"))
	if err != nil {
		return false
	}
	if lastModified == "" {
		lastModified = date
	}
	modified, err := http.ParseTime(lastModified)
	return err == nil && !modified.After(since)
}

// etagMatches reports whether an If-None-Match list matches etag by weak
// comparison; "*" matches any stored response.
func etagMatches(list []string, etag string) bool {
	for _, v := range list {
		for v != "" {
			var item string
			item, v = nextListItem(v)
			item = strings.TrimSpace(item)
			if item == "*" {
				return true
			}
			if etag != "" && strings.TrimPrefix(item, "W/") == strings.TrimPrefix(etag, "W/") {
				return true
			}
		}
	}
	return false
}

// Outcomes of parseRange.
const (
	rangeIgnore = iota
	rangeSatisfiable
	rangeUnsatisfiable
)

// parseRange parses a single byte range against a representation of size
// bytes and returns the inclusive offsets. Anything but one well-formed
// byte range is ignored, which RFC 9110 section 14.2 allows: the full
// response answers it (several ranges would need multipart/byteranges,
// which is not implemented).
func parseRange(v string, size int64) (start, end int64, res int) {
	const prefix = "bytes="
	if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return 0, 0, rangeIgnore
	}
	spec := strings.TrimSpace(v[len(prefix):])
	if strings.IndexByte(spec, ',') >= 0 {
		return 0, 0, rangeIgnore
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, rangeIgnore
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, rangeIgnore
		}
		if n == 0 || size == 0 {
			return 0, 0, rangeUnsatisfiable
		}
		return max(0, size-n), size - 1, rangeSatisfiable
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, rangeIgnore
	}
	end = size - 1
	if last != "" {
		if end, err = strconv.ParseInt(last, 10, 64); err != nil || end < start {
			return 0, 0, rangeIgnore
		}
		end = min(end, size-1)
	}
	if start >= size {
		return 0, 0, rangeUnsatisfiable
	}
	return start, end, rangeSatisfiable
}

// ifRangeMatches reports whether an If-Range value (absent counts as a
// match) still names the stored representation: an entity tag by strong
// comparison, or exactly its Last-Modified date (RFC 9110 section 13.1.5).
func ifRangeMatches(ifRange string, s *stored) bool {
	if ifRange == "" {
		return true
	}
	if strings.HasPrefix(ifRange, `"`) || strings.HasPrefix(ifRange, "W/") {
		etag := s.field("Etag")
		return !strings.HasPrefix(ifRange, "W/") && etag != "" && !strings.HasPrefix(etag, "W/") && etag == ifRange
	}
	lm := s.field("Last-Modified")
	t1, err1 := http.ParseTime(ifRange)
	t2, err2 := http.ParseTime(lm)
	return err1 == nil && err2 == nil && t1.Equal(t2)
}

// currentAge is the stored response's age in seconds at now (RFC 9111
// section 4.2.3: corrected initial age plus resident time).
func (s *stored) currentAge(now time.Time) int64 {
	resident := max(0, now.UnixMilli()-s.respTime) / 1000
	return s.initialAge + resident
}
