package resp

import "github.com/tagcache/caddy-tagcache/store"

// transaction is a connection's MULTI: the queued commands, and whether
// one of them was refused, which makes EXEC discard them all.
type transaction struct {
	queue []queuedCommand
	dirty bool
}

type queuedCommand struct {
	cmd  *command
	args [][]byte
}

// enqueue keeps a copy of args: the reader reuses its buffer.
func (t *transaction) enqueue(cmd *command, args [][]byte) {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	buf := make([]byte, 0, n)
	copied := make([][]byte, len(args))
	for i, a := range args {
		start := len(buf)
		buf = append(buf, a...)
		copied[i] = buf[start:len(buf):len(buf)]
	}
	t.queue = append(t.queue, queuedCommand{cmd, copied})
}

// watchedKey is a key under WATCH and its CAS unique then (0 if it did not
// exist). The store changes an entry's CAS unique on every write, from
// whichever front, so comparing it at EXEC time sees every change Redis's
// WATCH would, including expiry and deletion.
type watchedKey struct {
	st  *store.Store
	key string
	cas uint64
}

func casOf(st *store.Store, key string) uint64 {
	it, _ := st.Get(key)
	return it.CAS
}

func (c *conn) multiCmd(args [][]byte) {
	if c.multi != nil {
		c.w.errorReply("ERR MULTI calls can not be nested")
		return
	}
	c.multi = &transaction{}
	c.client.multi.Store(0)
	c.w.simple("OK")
}

// exec runs the queued commands, unless one was refused when queued or a
// watched key changed. The check and the commands are not isolated from
// other clients as Redis's single thread isolates them: a write that lands
// between the check and a queued command is not detected, and another
// client may see the first queued commands' effects before the last ones
// run.
func (c *conn) exec(args [][]byte) {
	t := c.multi
	if t == nil {
		c.w.errorReply("ERR EXEC without MULTI")
		return
	}
	c.multi = nil
	c.client.multi.Store(-1)
	changed := c.watchedChanged()
	c.watched = nil
	switch {
	case t.dirty:
		c.w.errorReply("EXECABORT Transaction discarded because of previous errors.")
		return
	case changed:
		c.w.nullArray()
		return
	}
	c.w.array(len(t.queue))
	for _, q := range t.queue {
		// Rights are checked again: an AUTH in the transaction may have
		// changed them.
		if !c.s.Can(q.cmd.perm) {
			c.w.errorReply("NOPERM this user has no permissions to run the '" + q.cmd.fullName + "' command")
			continue
		}
		q.cmd.run(c, q.args)
	}
}

func (c *conn) discard(args [][]byte) {
	if c.multi == nil {
		c.w.errorReply("ERR DISCARD without MULTI")
		return
	}
	c.multi = nil
	c.client.multi.Store(-1)
	c.watched = nil
	c.w.simple("OK")
}

func (c *conn) watch(args [][]byte) {
	if c.multi != nil {
		c.w.errorReply("ERR WATCH inside MULTI is not allowed")
		return
	}
	for _, k := range args[1:] {
		if !c.isWatched(k) {
			key := string(k)
			c.watched = append(c.watched, watchedKey{c.db, key, casOf(c.db, key)})
		}
	}
	c.w.simple("OK")
}

func (c *conn) isWatched(key []byte) bool {
	for _, w := range c.watched {
		if w.st == c.db && w.key == string(key) {
			return true
		}
	}
	return false
}

func (c *conn) unwatch(args [][]byte) {
	c.watched = nil
	c.w.simple("OK")
}

func (c *conn) watchedChanged() bool {
	for _, w := range c.watched {
		if casOf(w.st, w.key) != w.cas {
			return true
		}
	}
	return false
}
