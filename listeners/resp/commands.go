package resp

import (
	"strings"

	"github.com/tagcache/caddy-tagcache/auth"
)

// cmdFlags describe a command for dispatch and for COMMAND's replies.
type cmdFlags uint16

const (
	flagWrite cmdFlags = 1 << iota
	flagReadonly
	flagAdmin
	// flagNoAuth: may run before the client authenticates.
	flagNoAuth
	// flagPubSubContext: allowed while a RESP2 client is subscribed.
	flagPubSubContext
	// flagNoQueue: runs at once inside MULTI instead of being queued.
	flagNoQueue
	flagFast
	flagPubSub
)

var flagNames = []struct {
	f    cmdFlags
	name string
}{
	{flagWrite, "write"}, {flagReadonly, "readonly"}, {flagAdmin, "admin"}, {flagPubSub, "pubsub"},
	{flagNoAuth, "no_auth"}, {flagFast, "fast"},
}

// keySpec says where a command's keys are, as COMMAND reports it: the
// first and last argument (negative counts from the end) and the step.
type keySpec struct{ first, last, step int }

var (
	noKeys   = keySpec{}
	oneKey   = keySpec{1, 1, 1}
	allKeys  = keySpec{1, -1, 1}
	twoKeys  = keySpec{1, 2, 1}
	keyPairs = keySpec{1, -1, 2}
)

// command is one entry of the command table.
type command struct {
	// name is lower case; fullName is "container|sub" for subcommands, as
	// Redis names them in errors.
	name, fullName string
	// arity is the exact number of arguments including the name, or
	// minus the least number.
	arity int
	flags cmdFlags
	perm  auth.Permission
	keys  keySpec
	// group and summary are what COMMAND DOCS tells redis-cli.
	group, summary string
	run            func(c *conn, args [][]byte)
	// subcommands of a container command (CONFIG, CLIENT, ...).
	subcommands map[string]*command
}

// commands maps a lower-case command name to its entry. It is filled in
// init: the COMMAND command reads it, which would otherwise be an
// initialization cycle.
var commands map[string]*command

func init() {
	commands = make(map[string]*command)
	for _, cmd := range commandTable() {
		cmd.fullName = cmd.name
		for _, sub := range cmd.subcommands {
			sub.fullName = cmd.name + "|" + sub.name
		}
		commands[cmd.name] = cmd
	}
}

// sub builds a container's subcommand map.
func sub(cmds ...*command) map[string]*command {
	m := make(map[string]*command, len(cmds))
	for _, c := range cmds {
		m[c.name] = c
	}
	return m
}

const (
	read      = auth.PermRead
	write     = auth.PermWrite
	readWrite = auth.PermRead | auth.PermWrite
	purge     = auth.PermPurge
	admin     = auth.PermAdmin
)

func commandTable() []*command {
	return []*command{
		// connection and server
		{name: "ping", arity: -1, flags: flagFast | flagPubSubContext, group: "connection", summary: "Returns the server's liveliness response.", run: (*conn).ping},
		{name: "echo", arity: 2, flags: flagFast, group: "connection", summary: "Returns the given string.", run: (*conn).echo},
		{name: "quit", arity: -1, flags: flagNoAuth | flagFast | flagPubSubContext | flagNoQueue, group: "connection", summary: "Closes the connection.", run: (*conn).quitCmd},
		{name: "auth", arity: -2, flags: flagNoAuth | flagFast, group: "connection", summary: "Authenticates the connection.", run: (*conn).authCmd},
		{name: "hello", arity: -1, flags: flagNoAuth | flagFast, group: "connection", summary: "Handshakes with the server.", run: (*conn).hello},
		{name: "select", arity: 2, flags: flagFast, group: "connection", summary: "Changes the selected database (a store, by index or name).", run: (*conn).selectCmd},
		{name: "namespaces", arity: 1, flags: flagFast, group: "connection", summary: "Lists the stores SELECT can choose, in index order.", run: (*conn).namespaces},
		{name: "reset", arity: 1, flags: flagNoAuth | flagFast | flagPubSubContext | flagNoQueue, group: "connection", summary: "Resets the connection.", run: (*conn).reset},
		{name: "client", arity: -2, group: "connection", summary: "A container for client connection commands.", subcommands: sub(
			&command{name: "id", arity: 2, flags: flagFast, group: "connection", summary: "Returns the unique client ID of the connection.", run: (*conn).clientID},
			&command{name: "getname", arity: 2, flags: flagFast, group: "connection", summary: "Returns the name of the connection.", run: (*conn).clientGetName},
			&command{name: "setname", arity: 3, flags: flagFast, group: "connection", summary: "Sets the connection name.", run: (*conn).clientSetName},
			&command{name: "setinfo", arity: 4, flags: flagFast, group: "connection", summary: "Sets information specific to the client or connection.", run: (*conn).clientSetInfo},
			&command{name: "info", arity: 2, flags: flagFast, group: "connection", summary: "Returns information about the connection.", run: (*conn).clientInfo},
			&command{name: "list", arity: -2, flags: flagAdmin, perm: read, group: "connection", summary: "Lists open connections.", run: (*conn).clientList},
			&command{name: "help", arity: 2, group: "connection", summary: "Returns helpful text about the different subcommands.", run: (*conn).clientHelp},
		)},
		{name: "info", arity: -1, perm: read, group: "server", summary: "Returns information and statistics about the server.", run: (*conn).info},
		{name: "dbsize", arity: 1, flags: flagReadonly | flagFast, perm: read, group: "server", summary: "Returns the number of keys in the database.", run: (*conn).dbsize},
		{name: "flushdb", arity: -1, flags: flagWrite | flagAdmin, perm: admin, group: "server", summary: "Removes all keys from the current database.", run: (*conn).flushdb},
		{name: "flushall", arity: -1, flags: flagWrite | flagAdmin, perm: admin, group: "server", summary: "Removes all keys from all databases.", run: (*conn).flushall},
		{name: "time", arity: 1, flags: flagFast, group: "server", summary: "Returns the server time.", run: (*conn).timeCmd},
		{name: "save", arity: 1, flags: flagAdmin, perm: admin, group: "server", summary: "Writes the current store's snapshot.", run: (*conn).save},
		{name: "bgsave", arity: -1, flags: flagAdmin, perm: admin, group: "server", summary: "Writes the current store's snapshot in the background.", run: (*conn).bgsave},
		{name: "lastsave", arity: 1, flags: flagFast, perm: read, group: "server", summary: "Returns the Unix time of the last snapshot of the current store.", run: (*conn).lastsave},
		{name: "command", arity: -1, group: "server", summary: "Returns detailed information about all commands.", run: (*conn).commandList, subcommands: sub(
			&command{name: "count", arity: 2, group: "server", summary: "Returns a count of commands.", run: (*conn).commandCount},
			&command{name: "info", arity: -2, group: "server", summary: "Returns information about one, multiple or all commands.", run: (*conn).commandInfo},
			&command{name: "docs", arity: -2, group: "server", summary: "Returns documentary information about one, multiple or all commands.", run: (*conn).commandDocs},
			&command{name: "list", arity: -2, group: "server", summary: "Returns a list of command names.", run: (*conn).commandNames},
			&command{name: "help", arity: 2, group: "server", summary: "Returns helpful text about the different subcommands.", run: (*conn).commandHelp},
		)},
		{name: "config", arity: -2, group: "server", summary: "A container for server configuration commands.", subcommands: sub(
			&command{name: "get", arity: -3, flags: flagAdmin, perm: read, group: "server", summary: "Returns the effective values of configuration parameters.", run: (*conn).configGet},
			&command{name: "set", arity: -4, flags: flagAdmin, perm: admin, group: "server", summary: "Sets configuration parameters of the current store until the next config reload.", run: (*conn).configSet},
			&command{name: "help", arity: 2, group: "server", summary: "Returns helpful text about the different subcommands.", run: (*conn).configHelp},
		)},

		// strings
		{name: "get", arity: 2, flags: flagReadonly | flagFast, perm: read, keys: oneKey, group: "string", summary: "Returns the string value of a key.", run: (*conn).get},
		{name: "set", arity: -3, flags: flagWrite, perm: write, keys: oneKey, group: "string", summary: "Sets the string value of a key, with optional expiry, conditions and tags.", run: (*conn).set},
		{name: "setnx", arity: 3, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "string", summary: "Sets the string value of a key only when the key doesn't exist.", run: (*conn).setnx},
		{name: "setex", arity: 4, flags: flagWrite, perm: write, keys: oneKey, group: "string", summary: "Sets the string value and expiration time in seconds of a key.", run: (*conn).setex},
		{name: "psetex", arity: 4, flags: flagWrite, perm: write, keys: oneKey, group: "string", summary: "Sets the string value and expiration time in milliseconds of a key.", run: (*conn).psetex},
		{name: "mget", arity: -2, flags: flagReadonly | flagFast, perm: read, keys: allKeys, group: "string", summary: "Atomically returns the string values of one or more keys.", run: (*conn).mget},
		{name: "mset", arity: -3, flags: flagWrite, perm: write, keys: keyPairs, group: "string", summary: "Sets the string values of one or more keys.", run: (*conn).mset},
		{name: "msetnx", arity: -3, flags: flagWrite, perm: write, keys: keyPairs, group: "string", summary: "Sets the string values of one or more keys only when all keys don't exist.", run: (*conn).msetnx},
		{name: "getset", arity: 3, flags: flagWrite | flagFast, perm: readWrite, keys: oneKey, group: "string", summary: "Returns the previous string value of a key after setting it to a new value.", run: (*conn).getset},
		{name: "getdel", arity: 2, flags: flagWrite | flagFast, perm: readWrite, keys: oneKey, group: "string", summary: "Returns the string value of a key after deleting the key.", run: (*conn).getdel},
		{name: "getex", arity: -2, flags: flagWrite | flagFast, perm: readWrite, keys: oneKey, group: "string", summary: "Returns the string value of a key after setting its expiration time.", run: (*conn).getex},
		{name: "append", arity: 3, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "string", summary: "Appends a string to the value of a key. Creates the key if it doesn't exist.", run: (*conn).appendCmd},
		{name: "strlen", arity: 2, flags: flagReadonly | flagFast, perm: read, keys: oneKey, group: "string", summary: "Returns the length of a string value.", run: (*conn).strlen},
		{name: "getrange", arity: 4, flags: flagReadonly, perm: read, keys: oneKey, group: "string", summary: "Returns a substring of the string stored at a key.", run: (*conn).getrange},
		{name: "substr", arity: 4, flags: flagReadonly, perm: read, keys: oneKey, group: "string", summary: "Returns a substring from a string value.", run: (*conn).getrange},
		{name: "setrange", arity: 4, flags: flagWrite, perm: write, keys: oneKey, group: "string", summary: "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", run: (*conn).setrange},
		{name: "incr", arity: 2, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "string", summary: "Increments the integer value of a key by one.", run: (*conn).incr},
		{name: "decr", arity: 2, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "string", summary: "Decrements the integer value of a key by one.", run: (*conn).decr},
		{name: "incrby", arity: 3, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "string", summary: "Increments the integer value of a key by a number.", run: (*conn).incrby},
		{name: "decrby", arity: 3, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "string", summary: "Decrements a number from the integer value of a key.", run: (*conn).decrby},
		{name: "incrbyfloat", arity: 3, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "string", summary: "Increments the floating point value of a key by a number.", run: (*conn).incrbyfloat},

		// keys
		{name: "del", arity: -2, flags: flagWrite, perm: write, keys: allKeys, group: "generic", summary: "Deletes one or more keys.", run: (*conn).del},
		{name: "unlink", arity: -2, flags: flagWrite | flagFast, perm: write, keys: allKeys, group: "generic", summary: "Deletes one or more keys.", run: (*conn).del},
		{name: "exists", arity: -2, flags: flagReadonly | flagFast, perm: read, keys: allKeys, group: "generic", summary: "Determines whether one or more keys exist.", run: (*conn).exists},
		{name: "expire", arity: -3, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "generic", summary: "Sets the expiration time of a key in seconds.", run: (*conn).expire},
		{name: "pexpire", arity: -3, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "generic", summary: "Sets the expiration time of a key in milliseconds.", run: (*conn).pexpire},
		{name: "expireat", arity: -3, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "generic", summary: "Sets the expiration time of a key to a Unix timestamp.", run: (*conn).expireat},
		{name: "pexpireat", arity: -3, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "generic", summary: "Sets the expiration time of a key to a Unix milliseconds timestamp.", run: (*conn).pexpireat},
		{name: "ttl", arity: 2, flags: flagReadonly | flagFast, perm: read, keys: oneKey, group: "generic", summary: "Returns the expiration time in seconds of a key.", run: (*conn).ttl},
		{name: "pttl", arity: 2, flags: flagReadonly | flagFast, perm: read, keys: oneKey, group: "generic", summary: "Returns the expiration time in milliseconds of a key.", run: (*conn).pttl},
		{name: "expiretime", arity: 2, flags: flagReadonly | flagFast, perm: read, keys: oneKey, group: "generic", summary: "Returns the expiration time of a key as a Unix timestamp.", run: (*conn).expiretime},
		{name: "pexpiretime", arity: 2, flags: flagReadonly | flagFast, perm: read, keys: oneKey, group: "generic", summary: "Returns the expiration time of a key as a Unix milliseconds timestamp.", run: (*conn).pexpiretime},
		{name: "persist", arity: 2, flags: flagWrite | flagFast, perm: write, keys: oneKey, group: "generic", summary: "Removes the expiration time of a key.", run: (*conn).persist},
		{name: "type", arity: 2, flags: flagReadonly | flagFast, perm: read, keys: oneKey, group: "generic", summary: "Determines the type of value stored at a key.", run: (*conn).typeCmd},
		{name: "rename", arity: 3, flags: flagWrite, perm: write, keys: twoKeys, group: "generic", summary: "Renames a key and overwrites the destination.", run: (*conn).rename},
		{name: "renamenx", arity: 3, flags: flagWrite | flagFast, perm: write, keys: twoKeys, group: "generic", summary: "Renames a key only when the target key name doesn't exist.", run: (*conn).renamenx},
		{name: "copy", arity: -3, flags: flagWrite, perm: readWrite, keys: twoKeys, group: "generic", summary: "Copies the value of a key to a new key.", run: (*conn).copyCmd},
		{name: "keys", arity: 2, flags: flagReadonly, perm: read, group: "generic", summary: "Returns all key names that match a pattern.", run: (*conn).keysCmd},
		{name: "scan", arity: -2, flags: flagReadonly, perm: read, group: "generic", summary: "Iterates over the key names in the database.", run: (*conn).scan},
		{name: "randomkey", arity: 1, flags: flagReadonly, perm: read, group: "generic", summary: "Returns a random key name from the database.", run: (*conn).randomkey},
		{name: "touch", arity: -2, flags: flagReadonly | flagFast, perm: read, keys: allKeys, group: "generic", summary: "Returns the number of existing keys out of those specified after updating the time they were last accessed.", run: (*conn).touch},

		// tags
		{name: "settag", arity: -4, flags: flagWrite, perm: write, keys: oneKey, group: "tag", summary: "Sets the string value of a key with tags: SETTAG key value tag [tag ...].", run: (*conn).settag},
		{name: "tagkeys", arity: 2, flags: flagReadonly, perm: read, group: "tag", summary: "Returns the keys carrying a tag.", run: (*conn).tagkeys},
		{name: "tagcount", arity: 2, flags: flagReadonly | flagFast, perm: read, group: "tag", summary: "Returns the number of keys carrying a tag.", run: (*conn).tagcount},
		{name: "taginfo", arity: 2, flags: flagReadonly, perm: read, group: "tag", summary: "Returns the name and key count of a tag.", run: (*conn).taginfo},
		{name: "tagdel", arity: 2, flags: flagWrite, perm: purge, group: "tag", summary: "Removes a tag from every key carrying it, keeping the keys.", run: (*conn).tagdel},
		{name: "invalidate", arity: -2, flags: flagWrite, perm: purge, group: "tag", summary: "Deletes every key carrying any of the tags, in every front.", run: (*conn).invalidate},

		// pub/sub
		{name: "subscribe", arity: -2, flags: flagPubSub | flagPubSubContext, perm: read, group: "pubsub", summary: "Listens for messages published to channels.", run: (*conn).subscribe},
		{name: "unsubscribe", arity: -1, flags: flagPubSub | flagPubSubContext, perm: read, group: "pubsub", summary: "Stops listening to messages posted to channels.", run: (*conn).unsubscribe},
		{name: "psubscribe", arity: -2, flags: flagPubSub | flagPubSubContext, perm: read, group: "pubsub", summary: "Listens for messages published to channels that match one or more patterns.", run: (*conn).psubscribe},
		{name: "punsubscribe", arity: -1, flags: flagPubSub | flagPubSubContext, perm: read, group: "pubsub", summary: "Stops listening to messages published to channels that match one or more patterns.", run: (*conn).punsubscribe},
		{name: "publish", arity: 3, flags: flagPubSub | flagFast, perm: write, group: "pubsub", summary: "Posts a message to a channel.", run: (*conn).publish},
		{name: "pubsub", arity: -2, group: "pubsub", summary: "A container for Pub/Sub commands.", subcommands: sub(
			&command{name: "channels", arity: -2, flags: flagPubSub, perm: read, group: "pubsub", summary: "Returns the active channels.", run: (*conn).pubsubChannels},
			&command{name: "numsub", arity: -2, flags: flagPubSub, perm: read, group: "pubsub", summary: "Returns a count of subscribers to channels.", run: (*conn).pubsubNumsub},
			&command{name: "numpat", arity: 2, flags: flagPubSub, perm: read, group: "pubsub", summary: "Returns a count of unique pattern subscriptions.", run: (*conn).pubsubNumpat},
			&command{name: "help", arity: 2, group: "pubsub", summary: "Returns helpful text about the different subcommands.", run: (*conn).pubsubHelp},
		)},

		// transactions
		{name: "multi", arity: 1, flags: flagFast | flagNoQueue, group: "transactions", summary: "Starts a transaction.", run: (*conn).multiCmd},
		{name: "exec", arity: 1, flags: flagNoQueue, group: "transactions", summary: "Executes all commands in a transaction.", run: (*conn).exec},
		{name: "discard", arity: 1, flags: flagFast | flagNoQueue, group: "transactions", summary: "Discards a transaction.", run: (*conn).discard},
		{name: "watch", arity: -2, flags: flagFast | flagNoQueue, perm: read, keys: allKeys, group: "transactions", summary: "Monitors changes to keys to determine the execution of a transaction.", run: (*conn).watch},
		{name: "unwatch", arity: 1, flags: flagFast, group: "transactions", summary: "Forgets about watched keys of a transaction.", run: (*conn).unwatch},
	}
}

// lookup finds the command (or subcommand) that args name and checks its
// arity; on failure it returns the error to reply, in Redis's words.
func lookup(args [][]byte) (*command, string) {
	cmd := commandByName(args[0])
	if cmd == nil {
		if kind := unsupportedKind(args[0]); kind != "" {
			return nil, "ERR unsupported command '" + strings.ToLower(string(args[0])) + "': tagcache stores strings only; " + kind + " are not supported yet"
		}
		return nil, unknownCommand(args)
	}
	if cmd.subcommands != nil && len(args) >= 2 {
		sub := cmd.subcommands[strings.ToLower(string(args[1]))]
		if sub == nil {
			return nil, "ERR unknown subcommand '" + cString(args[1], 128) + "'. Try " + strings.ToUpper(cmd.name) + " HELP."
		}
		cmd = sub
	}
	if n := len(args); (cmd.arity > 0 && n != cmd.arity) || n < -cmd.arity {
		return nil, "ERR wrong number of arguments for '" + cmd.fullName + "' command"
	}
	return cmd, ""
}

// commandByName looks name up without allocating.
func commandByName(name []byte) *command {
	var buf [16]byte
	if len(name) > len(buf) {
		return nil // no command has a longer name
	}
	for i, c := range name {
		buf[i] = lower(c)
	}
	return commands[string(buf[:len(name)])]
}

// unknownCommand is Redis's error for a command it does not know, quoting
// the first arguments up to 128 bytes.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	for _, a := range args[1:] {
		if b.Len() >= 128 {
			break
		}
		room := 128 - b.Len()
		b.WriteByte('\'')
		b.WriteString(cString(a, room))
		b.WriteString("' ")
	}
	return "ERR unknown command '" + cString(args[0], 128) + "', with args beginning with: " + b.String()
}

// cString is what C's "%.*s" prints of b: up to max bytes, ending at the
// first NUL.
func cString(b []byte, max int) string {
	for i, c := range b {
		if c == 0 || i == max {
			return string(b[:i])
		}
	}
	return string(b)
}

// dataTypeCommands maps the commands of the Redis data types that the
// store does not have yet to the type's name, so that they get a clear
// error rather than "unknown command".
var dataTypeCommands = map[string]string{}

func init() {
	for kind, names := range map[string]string{
		"hashes":       "hset hget hmset hmget hgetall hdel hexists hlen hkeys hvals hincrby hincrbyfloat hsetnx hstrlen hrandfield hscan",
		"lists":        "lpush rpush lpushx rpushx lpop rpop llen lrange lindex lset lrem ltrim rpoplpush linsert lmove blpop brpop brpoplpush lpos lmpop blmpop blmove",
		"sets":         "sadd srem smembers sismember smismember scard spop srandmember smove sunion sinter sintercard sdiff sunionstore sinterstore sdiffstore sscan",
		"sorted sets":  "zadd zcard zcount zrange zrangebyscore zrangebylex zrevrangebylex zrangestore zrank zrem zscore zincrby zrevrange zrevrank zremrangebyrank zremrangebyscore zremrangebylex zpopmin zpopmax bzpopmin bzpopmax zrandmember zmscore zunionstore zinterstore zdiffstore zunion zinter zdiff zintercard zlexcount zscan zmpop bzmpop zrevrangebyscore",
		"streams":      "xadd xlen xrange xrevrange xread xdel xtrim xinfo xgroup xreadgroup xack xpending xclaim xautoclaim xsetid",
		"geo indexes":  "geoadd geodist geohash geopos georadius georadiusbymember geosearch geosearchstore",
		"bitmaps":      "setbit getbit bitcount bitpos bitop bitfield bitfield_ro",
		"hyperloglogs": "pfadd pfcount pfmerge",
	} {
		for _, name := range strings.Fields(names) {
			dataTypeCommands[name] = kind
		}
	}
}

// unsupportedKind names the data type of a command the store cannot serve
// yet, or returns "".
func unsupportedKind(name []byte) string {
	if len(name) > 32 {
		return ""
	}
	return dataTypeCommands[strings.ToLower(string(name))]
}
