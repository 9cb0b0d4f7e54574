package memcached

import (
	"bytes"
	"encoding/base64"
	"errors"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/store"
)

// The tag extension. memcached has no tags; these commands and flags give
// them to memcached clients without changing anything a stock client sends
// or expects (see the README):
//
//	set <key> <flags> <exptime> <bytes> [tags=<t1,t2>] [noreply]   (and add, replace, cas)
//	ms <key> <datalen> G<t1,t2> ...        sets the entry's tags (base64 each with b)
//	mg <key> g ...                         returns them as g<t1,t2>
//	tag_keys <tag> [limit]                 KEY <key> lines, then END
//	tag_invalidate <tag>... [noreply]      INVALIDATED <n>: removes the tagged entries
//	tag_stale <tag>... [noreply]           STALE <n>: marks them stale (mg then answers X and W)

var errBadTag = errors.New("bad base64 in tag list")

// parseTags splits a comma-separated tag list, base64-decoding each tag if
// b64. The strings view the command line or c.tagBuf (the store copies the
// tags it keeps) and are valid until the next command.
func (c *conn) parseTags(list []byte, b64 bool) ([]string, error) {
	c.tags = c.tags[:0]
	// Decoded tags are shorter than the list, so tagBuf never moves while
	// the strings point into it.
	c.tagBuf = c.tagBuf[:0]
	if cap(c.tagBuf) < len(list) {
		c.tagBuf = make([]byte, 0, len(list))
	}
	for len(list) > 0 {
		tag := list
		if i := bytes.IndexByte(list, ','); i >= 0 {
			tag, list = list[:i], list[i+1:]
		} else {
			list = nil
		}
		if len(tag) == 0 {
			return nil, store.ErrEmptyTag
		}
		if b64 {
			start := len(c.tagBuf)
			enc := base64.StdEncoding
			if len(tag)%4 != 0 {
				enc = base64.RawStdEncoding
			}
			var err error
			if c.tagBuf, err = enc.AppendDecode(c.tagBuf, tag); err != nil {
				return nil, errBadTag
			}
			tag = c.tagBuf[start:]
		}
		c.tags = append(c.tags, alias(tag))
	}
	return c.tags, nil
}

// writeTags writes tags comma-separated, base64-encoding each if b64.
func (c *conn) writeTags(tags []string, b64 bool) {
	for i, tag := range tags {
		if i > 0 {
			c.w.WriteByte(',')
		}
		if b64 {
			c.out = base64.StdEncoding.AppendEncode(c.out[:0], []byte(tag))
			c.w.Write(c.out)
		} else {
			c.w.WriteString(tag)
		}
	}
}

// tagKeys answers tag_keys <tag> [limit]: a KEY line for each live entry
// carrying the tag (a key that is not a valid text key is sent in base64,
// followed by " b"), then END.
func (c *conn) tagKeys() {
	t := c.toks
	if len(t) < 2 || len(t) > 3 {
		c.reply(replyError)
		return
	}
	limit := uint32(0)
	if len(t) == 3 {
		var ok bool
		if limit, ok = parseUint32(t[2]); !ok {
			c.reply(replyBadFormat)
			return
		}
	}
	if !c.permit(auth.PermRead) {
		return
	}
	for _, key := range c.st.KeysByTag(alias(t[1]), int(limit)) {
		c.w.WriteString("KEY ")
		if textToken(key) {
			c.w.WriteString(key)
		} else {
			c.out = base64.StdEncoding.AppendEncode(c.out[:0], []byte(key))
			c.w.Write(c.out)
			c.w.WriteString(" b")
		}
		c.w.WriteString("\r\n")
	}
	c.w.WriteString("END\r\n")
}

// tagPurge answers tag_invalidate and (stale) tag_stale <tag>... [noreply].
func (c *conn) tagPurge(stale bool) {
	tags := c.toks[1:]
	if n := len(tags); n > 0 && string(tags[n-1]) == "noreply" {
		c.noreply, tags = true, tags[:n-1]
	}
	if len(tags) == 0 {
		c.reply(replyError)
		return
	}
	if !c.permit(auth.PermPurge) {
		return
	}
	c.tags = c.tags[:0]
	for _, tag := range tags {
		c.tags = append(c.tags, alias(tag))
	}
	if stale {
		n := c.st.StaleTags(c.tags...)
		c.reply("STALE ")
		c.replyCount(n)
		return
	}
	n := c.st.InvalidateTags(c.tags...)
	c.reply("INVALIDATED ")
	c.replyCount(n)
}

// replyCount ends a reply line with a count, unless noreply.
func (c *conn) replyCount(n int) {
	if !c.noreply {
		c.writeInt(int64(n))
		c.w.WriteString("\r\n")
	}
}
