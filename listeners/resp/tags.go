package resp

import (
	"slices"

	"github.com/tagcache/caddy-tagcache/store"
)

// Tag commands, with CacheStorm's names. The tags are the store's: the
// same tags the HTTP cache takes from Surrogate-Key headers and the other
// fronts set, so INVALIDATE here purges what they stored too.

// settag answers SETTAG key value tag [tag ...]: SET with tags.
func (c *conn) settag(args [][]byte) {
	tags := make([]string, len(args)-3)
	for i, t := range args[3:] {
		tags[i] = str(t)
	}
	if _, err := c.db.Set(str(args[1]), args[2], store.Params{Tags: tags}); err != nil {
		c.fail(c.db, err)
		return
	}
	c.w.simple("OK")
}

func (c *conn) tagkeys(args [][]byte) {
	c.w.stringArray(c.db.KeysByTag(str(args[1]), 0))
}

func (c *conn) tagcount(args [][]byte) {
	c.w.integer(int64(c.db.TagCount(str(args[1]))))
}

// taginfo answers TAGINFO tag with a map: the tag's name and how many live
// keys carry it.
func (c *conn) taginfo(args [][]byte) {
	c.w.mapHeader(2)
	c.w.bulkString("tag")
	c.w.bulk(args[1])
	c.w.bulkString("count")
	c.w.integer(int64(c.db.TagCount(str(args[1]))))
}

// tagdel answers TAGDEL tag: the tag is taken off every entry carrying it
// and the entries stay (INVALIDATE removes them). It answers how many
// entries it changed.
func (c *conn) tagdel(args [][]byte) {
	tag := string(args[1])
	n := 0
	for _, key := range c.db.KeysByTag(tag, 0) {
		changed := false
		err := modify(c.db, key, func(it store.Item, exists bool) (edit, error) {
			i := slices.Index(it.Tags, tag)
			if changed = exists && i >= 0; !changed {
				return edit{}, nil
			}
			p := kept(it)
			p.Tags = slices.Delete(slices.Clone(it.Tags), i, i+1)
			return rewrite(it, p), nil
		})
		if err != nil {
			c.fail(c.db, err)
			return
		}
		if changed {
			n++
		}
	}
	c.w.integer(int64(n))
}

// invalidate answers INVALIDATE tag [tag ...] with the number of entries
// removed.
func (c *conn) invalidate(args [][]byte) {
	tags := make([]string, len(args)-1)
	for i, t := range args[1:] {
		tags[i] = str(t)
	}
	c.w.integer(int64(c.db.InvalidateTags(tags...)))
}
