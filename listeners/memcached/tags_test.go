package memcached

import (
	"encoding/base64"
	"slices"
	"testing"
)

// tagKeys runs tag_keys and returns the KEY lines, sorted.
func (c *client) tagKeys(req string) []string {
	c.t.Helper()
	c.send(req)
	var keys []string
	for {
		l := c.line()
		if l == "END\r\n" {
			slices.Sort(keys)
			return keys
		}
		keys = append(keys, l)
	}
}

func TestTagExtension(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	c.do("set page:1 0 0 2 tags=product:42,category:7\r\np1\r\n", "STORED\r\n")
	c.send("set page:2 0 0 2 noreply tags=product:42\r\np2\r\n")
	c.do("ms page:3 2 Gcategory:7\r\np3\r\n", "HD\r\n")
	c.do("set page:4 0 0 2\r\np4\r\n", "STORED\r\n")
	// The tags are the store's, seen by every front.
	if tags, _ := srv.st.TagsOf("page:1"); !slices.Equal(tags, []string{"product:42", "category:7"}) {
		t.Fatalf("page:1 tags %q", tags)
	}
	c.do("mg page:1 g v\r\n", "VA 2 gproduct:42,category:7\r\np1\r\n")
	c.do("mg page:4 g\r\n", "HD g\r\n")
	if keys := c.tagKeys("tag_keys product:42\r\n"); !slices.Equal(keys, []string{"KEY page:1\r\n", "KEY page:2\r\n"}) {
		t.Fatalf("tag_keys product:42: %q", keys)
	}
	if keys := c.tagKeys("tag_keys product:42 1\r\n"); len(keys) != 1 {
		t.Fatalf("tag_keys with a limit of 1: %q", keys)
	}
	c.do("tag_keys nothing\r\n", "END\r\n")
	// Append keeps the tags; a plain set replaces them (with none).
	c.do("append page:1 0 0 1\r\n!\r\n", "STORED\r\n")
	c.do("mg page:1 g\r\n", "HD gproduct:42,category:7\r\n")
	c.do("tag_stale category:7\r\n", "STALE 2\r\n")
	c.do("mg page:3 v\r\n", "VA 2 X W\r\np3\r\n")
	c.do("tag_invalidate product:42 nothing\r\n", "INVALIDATED 2\r\n")
	c.do("get page:1 page:2 page:3 page:4\r\n", "VALUE page:3 0 2\r\np3\r\nVALUE page:4 0 2\r\np4\r\nEND\r\n")
	c.do("tag_invalidate category:7 noreply\r\nmn\r\n", "MN\r\n")
	c.do("get page:3\r\n", "END\r\n")
	// A key that is not a text key is listed in base64.
	c.do("ms a2V5IDE= 1 b GdA\r\nx\r\n", "HD\r\n")
	c.do("tag_keys t\r\n", "KEY a2V5IDE= b\r\nEND\r\n")
	c.do("tag_keys\r\n", "ERROR\r\n")
	c.do("tag_keys t x\r\n", "CLIENT_ERROR bad command line format\r\n")
	c.do("tag_invalidate\r\n", "ERROR\r\n")
	c.do("tag_invalidate noreply\r\n", "")
	c.do("set k 0 0 1 tags=a,,b\r\nx\r\n", "CLIENT_ERROR empty tag\r\n")
	c.do("ms aw== 1 G"+base64.StdEncoding.EncodeToString(make([]byte, 2000))+" b\r\nx\r\n", "CLIENT_ERROR tag too long: 2000 > 1024\r\n")
}

func TestTagLimits(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	many := "tags=t0"
	for i := 1; i < 70; i++ {
		many += ",t" + string(rune('0'+i%10)) + string(rune('a'+i/10))
	}
	c.do("set k 0 0 1 "+many+"\r\nx\r\n", "CLIENT_ERROR too many tags: 70 > 64\r\n")
}
