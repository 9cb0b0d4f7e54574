package resp

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tagcache/caddy-tagcache/store"
)

// client is a connection as CLIENT LIST shows it. The registry is process
// wide, like the pub/sub broker: connections outlive config reloads, and
// IDs stay unique across them.
type client struct {
	id          uint64
	addr, laddr string
	created     time.Time
	// The fields below are written by the connection and read by CLIENT
	// LIST on other connections.
	lastActive  atomic.Int64 // Unix ms of the last command batch
	lastCommand atomic.Pointer[command]
	commands    atomic.Uint64
	db          atomic.Int32
	resp        atomic.Int32
	subs, psubs atomic.Int32
	multi       atomic.Int32 // queued commands, -1 outside MULTI

	mu                    sync.Mutex
	name, libName, libVer string
	user                  string
}

var clients = struct {
	sync.Mutex
	m      map[uint64]*client
	nextID uint64
	// total counts every connection so far; retiredCommands the commands
	// of the connections that ended.
	total, retiredCommands uint64
}{m: make(map[uint64]*client)}

func registerClient(nc net.Conn) *client {
	cl := &client{created: time.Now()}
	if nc != nil {
		cl.addr, cl.laddr = addrString(nc.RemoteAddr()), addrString(nc.LocalAddr())
	}
	cl.resp.Store(2)
	cl.multi.Store(-1)
	cl.lastActive.Store(cl.created.UnixMilli())
	clients.Lock()
	clients.nextID++
	clients.total++
	cl.id = clients.nextID
	clients.m[cl.id] = cl
	clients.Unlock()
	return cl
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func unregisterClient(cl *client) {
	clients.Lock()
	delete(clients.m, cl.id)
	clients.retiredCommands += cl.commands.Load()
	clients.Unlock()
}

// clientStats returns the connected clients, those of them subscribed to
// something, the connections made so far and the commands processed.
func clientStats() (connected, subscribed int, total, commands uint64) {
	clients.Lock()
	defer clients.Unlock()
	commands = clients.retiredCommands
	for _, cl := range clients.m {
		commands += cl.commands.Load()
		if cl.subs.Load()+cl.psubs.Load() > 0 {
			subscribed++
		}
	}
	return len(clients.m), subscribed, clients.total, commands
}

func (cl *client) setDB(i int) { cl.db.Store(int32(i)) }

// line formats the client as one line of CLIENT LIST.
func (cl *client) line(now time.Time) string {
	cl.mu.Lock()
	name, libName, libVer, user := cl.name, cl.libName, cl.libVer, cl.user
	cl.mu.Unlock()
	if user == "" {
		user = "default"
	}
	flags := ""
	if cl.subs.Load()+cl.psubs.Load() > 0 {
		flags += "P"
	}
	if cl.multi.Load() >= 0 {
		flags += "x"
	}
	if flags == "" {
		flags = "N"
	}
	cmd := "NULL"
	if c := cl.lastCommand.Load(); c != nil {
		cmd = c.fullName
	}
	var b strings.Builder
	field := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	num := func(n int64) string { return strconv.FormatInt(n, 10) }
	field("id", strconv.FormatUint(cl.id, 10))
	field("addr", cl.addr)
	field("laddr", cl.laddr)
	field("name", name)
	field("age", num(int64(now.Sub(cl.created)/time.Second)))
	field("idle", num((now.UnixMilli()-cl.lastActive.Load())/1000))
	field("flags", flags)
	field("db", num(int64(cl.db.Load())))
	field("sub", num(int64(cl.subs.Load())))
	field("psub", num(int64(cl.psubs.Load())))
	field("multi", num(int64(cl.multi.Load())))
	field("cmd", cmd)
	field("user", user)
	field("lib-name", libName)
	field("lib-ver", libVer)
	field("resp", num(int64(cl.resp.Load())))
	b.WriteByte('\n')
	return b.String()
}

func (c *conn) clientID(args [][]byte) { c.w.integer(int64(c.client.id)) }

func (c *conn) clientGetName(args [][]byte) {
	c.client.mu.Lock()
	name := c.client.name
	c.client.mu.Unlock()
	if name == "" {
		c.w.null()
		return
	}
	c.w.bulkString(name)
}

func (c *conn) clientSetName(args [][]byte) {
	if !validClientName(args[2]) {
		c.w.errorReply("ERR Client names cannot contain spaces, newlines or special characters.")
		return
	}
	c.client.mu.Lock()
	c.client.name = string(args[2])
	c.client.mu.Unlock()
	c.w.simple("OK")
}

// validClientName allows the printable ASCII characters but space, as
// Redis does for names and library details.
func validClientName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

func (c *conn) clientSetInfo(args [][]byte) {
	attr := strings.ToLower(string(args[2]))
	if attr != "lib-name" && attr != "lib-ver" {
		c.w.errorReply("ERR Unrecognized option '" + cString(args[2], 128) + "'")
		return
	}
	if !validClientName(args[3]) {
		c.w.errorReply("ERR " + attr + " cannot contain spaces, newlines or special characters.")
		return
	}
	c.client.mu.Lock()
	if attr == "lib-name" {
		c.client.libName = string(args[3])
	} else {
		c.client.libVer = string(args[3])
	}
	c.client.mu.Unlock()
	c.w.simple("OK")
}

func (c *conn) clientInfo(args [][]byte) {
	c.w.verbatim(c.client.line(time.Now()))
}

// clientList answers CLIENT LIST [TYPE normal|master|replica|pubsub]
// [ID id ...].
func (c *conn) clientList(args [][]byte) {
	var ids []uint64
	kind := ""
	for i := 2; i < len(args); i++ {
		switch opt := strings.ToLower(string(args[i])); {
		case opt == "type" && i+1 < len(args):
			kind = strings.ToLower(string(args[i+1]))
			if kind != "normal" && kind != "master" && kind != "replica" && kind != "slave" && kind != "pubsub" {
				c.w.errorReply("ERR Unknown client type '" + cString(args[i+1], 128) + "'")
				return
			}
			i++
		case opt == "id" && i+1 < len(args):
			for i++; i < len(args); i++ {
				id, ok := store.ParseCanonicalInt(args[i])
				if !ok {
					c.w.errorReply("ERR Invalid client ID")
					return
				}
				ids = append(ids, uint64(id))
			}
		default:
			c.w.errorReply(errSyntax)
			return
		}
	}
	clients.Lock()
	list := make([]*client, 0, len(clients.m))
	for _, cl := range clients.m {
		list = append(list, cl)
	}
	clients.Unlock()
	slices.SortFunc(list, func(a, b *client) int { return cmp.Compare(a.id, b.id) })
	now := time.Now()
	var b strings.Builder
	for _, cl := range list {
		pubsub := cl.subs.Load()+cl.psubs.Load() > 0
		switch {
		case ids != nil && !slices.Contains(ids, cl.id):
		case kind == "master" || kind == "replica" || kind == "slave":
		case kind == "pubsub" && !pubsub, kind == "normal" && pubsub:
		default:
			b.WriteString(cl.line(now))
		}
	}
	c.w.verbatim(b.String())
}

func (c *conn) clientHelp(args [][]byte) {
	c.help("CLIENT",
		"GETNAME", "    Return the name of the current connection.",
		"ID", "    Return the ID of the current connection.",
		"INFO", "    Return information about the current client connection.",
		"LIST [TYPE <normal|master|replica|pubsub>] [ID <id> [<id> ...]]", "    Return information about client connections.",
		"SETINFO <LIB-NAME|LIB-VER> <value>", "    Set client library name or version.",
		"SETNAME <name>", "    Assign the name <name> to the current connection.",
	)
}

// help answers a container's HELP subcommand as Redis words it.
func (c *conn) help(container string, lines ...string) {
	c.w.array(len(lines) + 3)
	c.w.simple(container + " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
	for _, l := range lines {
		c.w.simple(l)
	}
	c.w.simple("HELP")
	c.w.simple("    Print this help.")
}
