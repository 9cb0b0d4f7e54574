package resp

import (
	"slices"
	"strings"
)

// The COMMAND command: what clients (redis-cli's hints and help, cluster
// clients' key routing) learn about the commands.

// sortedCommands returns the command table in name order.
func sortedCommands() []*command {
	list := make([]*command, 0, len(commands))
	for _, cmd := range commands {
		list = append(list, cmd)
	}
	slices.SortFunc(list, func(a, b *command) int { return strings.Compare(a.name, b.name) })
	return list
}

// commandList answers COMMAND: every command's info.
func (c *conn) commandList(args [][]byte) {
	list := sortedCommands()
	c.w.array(len(list))
	for _, cmd := range list {
		c.writeCommandInfo(cmd)
	}
}

func (c *conn) commandCount(args [][]byte) { c.w.integer(int64(len(commands))) }

// commandInfo answers COMMAND INFO [name ...]; an unknown name gets a null.
func (c *conn) commandInfo(args [][]byte) {
	if len(args) == 2 {
		c.commandList(args)
		return
	}
	c.w.array(len(args) - 2)
	for _, name := range args[2:] {
		if cmd := findCommand(name); cmd != nil {
			c.writeCommandInfo(cmd)
		} else {
			c.w.nullArray()
		}
	}
}

// findCommand finds a command or, as "container|sub", a subcommand.
func findCommand(name []byte) *command {
	container, subName, isSub := strings.Cut(strings.ToLower(string(name)), "|")
	cmd := commands[container]
	if cmd == nil || !isSub {
		return cmd
	}
	return cmd.subcommands[subName]
}

// writeCommandInfo writes Redis 7's ten-element command description: name,
// arity, flags, first key, last key, step, ACL categories, tips, key
// specifications and subcommands.
func (c *conn) writeCommandInfo(cmd *command) {
	c.w.array(10)
	c.w.bulkString(cmd.fullName)
	c.w.integer(int64(cmd.arity))
	var flags []string
	for _, f := range flagNames {
		if cmd.flags&f.f != 0 {
			flags = append(flags, f.name)
		}
	}
	c.w.setHeader(len(flags))
	for _, f := range flags {
		c.w.simple(f)
	}
	c.w.integer(int64(cmd.keys.first))
	c.w.integer(int64(cmd.keys.last))
	c.w.integer(int64(cmd.keys.step))
	c.w.setHeader(1)
	c.w.simple("@" + cmd.group)
	c.w.array(0) // tips
	c.w.array(0) // key specifications
	subs := sortedSubcommands(cmd)
	c.w.array(len(subs))
	for _, sub := range subs {
		c.writeCommandInfo(sub)
	}
}

func sortedSubcommands(cmd *command) []*command {
	subs := make([]*command, 0, len(cmd.subcommands))
	for _, sub := range cmd.subcommands {
		subs = append(subs, sub)
	}
	slices.SortFunc(subs, func(a, b *command) int { return strings.Compare(a.name, b.name) })
	return subs
}

// commandDocs answers COMMAND DOCS [name ...] with a map from command name
// to its summary, version and group, which redis-cli shows as help.
func (c *conn) commandDocs(args [][]byte) {
	var list []*command
	if len(args) == 2 {
		list = sortedCommands()
	} else {
		for _, name := range args[2:] {
			if cmd := findCommand(name); cmd != nil {
				list = append(list, cmd)
			}
		}
	}
	c.w.mapHeader(len(list))
	for _, cmd := range list {
		c.w.bulkString(cmd.fullName)
		c.writeCommandDoc(cmd)
	}
}

func (c *conn) writeCommandDoc(cmd *command) {
	n := 3
	if cmd.subcommands != nil {
		n++
	}
	c.w.mapHeader(n)
	c.w.bulkString("summary")
	c.w.bulkString(cmd.summary)
	c.w.bulkString("since")
	c.w.bulkString("1.0.0")
	c.w.bulkString("group")
	c.w.bulkString(cmd.group)
	if cmd.subcommands != nil {
		subs := sortedSubcommands(cmd)
		c.w.bulkString("subcommands")
		c.w.mapHeader(len(subs))
		for _, sub := range subs {
			c.w.bulkString(sub.fullName)
			c.writeCommandDoc(sub)
		}
	}
}

// commandNames answers COMMAND LIST [FILTERBY PATTERN pattern].
func (c *conn) commandNames(args [][]byte) {
	pattern := ""
	switch {
	case len(args) == 2:
	case len(args) == 5 && strings.EqualFold(string(args[2]), "FILTERBY") && strings.EqualFold(string(args[3]), "PATTERN"):
		pattern = string(args[4])
	default:
		c.w.errorReply(errSyntax)
		return
	}
	var names []string
	for _, cmd := range sortedCommands() {
		if pattern == "" || globMatch(pattern, cmd.name, true) {
			names = append(names, cmd.name)
		}
	}
	c.w.stringArray(names)
}

func (c *conn) commandHelp(args [][]byte) {
	c.help("COMMAND",
		"(no subcommand)", "    Return details about all commands.",
		"COUNT", "    Return the total number of commands.",
		"DOCS [<command-name> ...]", "    Return documentation details about multiple commands.",
		"INFO [<command-name> ...]", "    Return details about multiple commands.",
		"LIST [FILTERBY PATTERN <pattern>]", "    Return a list of command names.",
	)
}
