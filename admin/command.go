package admin

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// DefaultAddress is where `caddy tagcache` looks for the JSON API when
// neither --address nor TAGCACHE_ADDRESS is set: TagCache's HTTP port on
// this machine, as in examples/api.Caddyfile.
const DefaultAddress = "http://localhost:8888"

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "tagcache",
		Usage: "<verb> [<args>] [--address <url>] [--username <name> --password <password>]",
		Short: "Reads and writes a tagcache store through its JSON API",
		Long: `
Talks to a tagcache_api site of a running Caddy, like TagCache's CLI.

The API is found at --address (or $TAGCACHE_ADDRESS; default
http://localhost:8888), a URL that may include the path prefix the API is
mounted under, such as https://cache.example.com/cache. Credentials of a
user of the tagcache auth block are given with --username and --password
(or $TAGCACHE_USERNAME and $TAGCACHE_PASSWORD); without users, the API
serves clients on its own machine only. For HTTPS with Caddy's internal CA,
--ca-cert (or $TAGCACHE_CA_CERT) names its root certificate.

The command fails with a non-zero exit status if the API cannot be
reached, the credentials are refused, or the request fails; get also fails
for a missing key.
`,
		CobraFunc: setUpCommand,
	})
}

// connection flags, each with its environment variable.
var connectionFlags = []struct{ name, env, usage string }{
	{"address", "TAGCACHE_ADDRESS", "URL of the tagcache_api site (default " + DefaultAddress + ")"},
	{"username", "TAGCACHE_USERNAME", "user to authenticate as"},
	{"password", "TAGCACHE_PASSWORD", "the user's password"},
	{"ca-cert", "TAGCACHE_CA_CERT", "PEM file of a CA to trust for HTTPS, such as Caddy's local root"},
}

// setUpCommand adds the flags and verbs of `caddy tagcache` to cmd.
func setUpCommand(cmd *cobra.Command) {
	cmd.SilenceUsage = true
	for _, f := range connectionFlags {
		cmd.PersistentFlags().String(f.name, "", f.usage+" [$"+f.env+"]")
	}
	writeFlags := func(c *cobra.Command) *cobra.Command {
		c.Flags().String("tags", "", "comma-separated tags")
		c.Flags().Int64("ttl-ms", 0, "time to live in milliseconds (0: none)")
		return c
	}
	counterFlags := func(c *cobra.Command) *cobra.Command {
		writeFlags(c).Flags().Int64("by", 1, "amount to add or subtract")
		return c
	}
	keysCmd := &cobra.Command{Use: "keys-by-tag <tag>", Short: "List the keys carrying a tag, one per line", Args: cobra.ExactArgs(1), RunE: runKeysByTag}
	keysCmd.Flags().Int("limit", 0, "most keys to list (0: all)")
	passwordCmd := &cobra.Command{
		Use:   "change-password <new-password|->",
		Short: "Change a user's password (yours unless --user); - reads it from stdin",
		Args:  cobra.ExactArgs(1),
		RunE:  runChangePassword,
	}
	passwordCmd.Flags().String("user", "", "user whose password to change (default: --username)")
	cmd.AddCommand(
		writeFlags(&cobra.Command{Use: "put <key> <value|->", Short: "Store a value (- reads it from stdin, binary-safe)", Args: cobra.ExactArgs(2), RunE: runWrite("/put")}),
		writeFlags(&cobra.Command{Use: "add <key> <value|->", Short: "Store a value only if the key has none", Args: cobra.ExactArgs(2), RunE: runWrite("/add")}),
		counterFlags(&cobra.Command{Use: "incr <key>", Short: "Add to an integer value (created if absent)", Args: cobra.ExactArgs(1), RunE: runCounter("/incr")}),
		counterFlags(&cobra.Command{Use: "decr <key>", Short: "Subtract from an integer value (created if absent)", Args: cobra.ExactArgs(1), RunE: runCounter("/decr")}),
		&cobra.Command{Use: "get <key>", Short: "Print a value as stored, byte for byte", Args: cobra.ExactArgs(1), RunE: runGet},
		&cobra.Command{Use: "del <key>", Short: "Remove a key", Args: cobra.ExactArgs(1), RunE: runDel},
		keysCmd,
		&cobra.Command{Use: "invalidate-tag <tag>...", Short: "Remove every entry carrying any of the tags; prints how many", Args: cobra.MinimumNArgs(1), RunE: runInvalidateTag},
		&cobra.Command{Use: "flush", Short: "Remove every entry of the store; prints how many", Args: cobra.NoArgs, RunE: runFlush},
		&cobra.Command{Use: "stats", Short: "Print the store's statistics as JSON", Args: cobra.NoArgs, RunE: runStats},
		&cobra.Command{Use: "health", Short: "Check that the API answers (needs no credentials)", Args: cobra.NoArgs, RunE: runHealth},
		passwordCmd,
	)
}

// clientFor builds the API client from the flags, then the environment.
func clientFor(cmd *cobra.Command) (*apiClient, error) {
	values := make(map[string]string, len(connectionFlags))
	for _, f := range connectionFlags {
		v, _ := cmd.Flags().GetString(f.name)
		if v == "" {
			v = os.Getenv(f.env)
		}
		values[f.name] = v
	}
	if values["address"] == "" {
		values["address"] = DefaultAddress
	}
	return newAPIClient(values["address"], values["username"], values["password"], values["ca-cert"])
}

// readValue returns arg, or all of stdin if arg is "-".
func readValue(cmd *cobra.Command, arg string) ([]byte, error) {
	if arg != "-" {
		return []byte(arg), nil
	}
	return io.ReadAll(cmd.InOrStdin())
}

func tagsFlag(cmd *cobra.Command) []string {
	s, _ := cmd.Flags().GetString("tags")
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// runWrite runs put and add; values travel in base64 so that any bytes
// arrive unchanged.
func runWrite(path string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := clientFor(cmd)
		if err != nil {
			return err
		}
		value, err := readValue(cmd, args[1])
		if err != nil {
			return err
		}
		ttlMs, _ := cmd.Flags().GetInt64("ttl-ms")
		encoded := base64.StdEncoding.EncodeToString(value)
		req := writeRequest{Key: args[0], Value: &encoded, Encoding: encodingBase64, Tags: tagsFlag(cmd), TTLMs: &ttlMs}
		var resp putResponse
		if _, err := c.do(http.MethodPost, path, nil, req, &resp); err != nil {
			return err
		}
		switch {
		case resp.Added == nil:
			fmt.Fprintln(cmd.OutOrStdout(), "stored")
		case *resp.Added:
			fmt.Fprintln(cmd.OutOrStdout(), "added")
		default:
			fmt.Fprintln(cmd.OutOrStdout(), "exists")
		}
		return nil
	}
}

// runCounter runs incr and decr and prints the new value.
func runCounter(path string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := clientFor(cmd)
		if err != nil {
			return err
		}
		by, _ := cmd.Flags().GetInt64("by")
		ttlMs, _ := cmd.Flags().GetInt64("ttl-ms")
		req := counterRequest{Key: args[0], By: &by, Tags: tagsFlag(cmd), TTLMs: &ttlMs}
		var resp counterResponse
		if _, err := c.do(http.MethodPost, path, nil, req, &resp); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), resp.Value)
		return nil
	}
}

func runGet(cmd *cobra.Command, args []string) error {
	c, err := clientFor(cmd)
	if err != nil {
		return err
	}
	var resp valueResponse
	status, err := c.do(http.MethodGet, "/get/"+url.PathEscape(args[0]), url.Values{"encoding": {encodingBase64}}, nil, &resp, http.StatusNotFound)
	if err != nil {
		return err
	}
	if status == http.StatusNotFound {
		return fmt.Errorf("key %q not found", args[0])
	}
	value, err := base64.StdEncoding.DecodeString(resp.Value)
	if err != nil {
		return fmt.Errorf("the API sent a value that is not base64: %v", err)
	}
	_, err = cmd.OutOrStdout().Write(value)
	return err
}

func runDel(cmd *cobra.Command, args []string) error {
	c, err := clientFor(cmd)
	if err != nil {
		return err
	}
	var resp invalidateResponse
	if _, err := c.do(http.MethodPost, "/invalidate-key", nil, keyRequest{Key: args[0]}, &resp); err != nil {
		return err
	}
	if resp.Success {
		fmt.Fprintln(cmd.OutOrStdout(), "deleted")
	} else {
		fmt.Fprintln(cmd.OutOrStdout(), "not found")
	}
	return nil
}

func runKeysByTag(cmd *cobra.Command, args []string) error {
	c, err := clientFor(cmd)
	if err != nil {
		return err
	}
	limit, _ := cmd.Flags().GetInt("limit")
	query := url.Values{"tag": {args[0]}, "limit": {strconv.Itoa(limit)}}
	var resp keysResponse
	if _, err := c.do(http.MethodGet, "/keys-by-tag", query, nil, &resp); err != nil {
		return err
	}
	out := bufio.NewWriter(cmd.OutOrStdout())
	for _, k := range resp.Keys {
		if resp.Encoding == encodingBase64 {
			raw, err := base64.StdEncoding.DecodeString(k)
			if err != nil {
				return fmt.Errorf("the API sent a key that is not base64: %v", err)
			}
			k = string(raw)
		}
		fmt.Fprintln(out, k)
	}
	return out.Flush()
}

func runInvalidateTag(cmd *cobra.Command, args []string) error {
	c, err := clientFor(cmd)
	if err != nil {
		return err
	}
	var resp invalidateResponse
	if _, err := c.do(http.MethodPost, "/invalidate-tag", nil, tagsRequest{Tags: args}, &resp); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), *resp.Count)
	return nil
}

func runFlush(cmd *cobra.Command, _ []string) error {
	c, err := clientFor(cmd)
	if err != nil {
		return err
	}
	var resp invalidateResponse
	if _, err := c.do(http.MethodPost, "/flush", nil, nil, &resp); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), *resp.Count)
	return nil
}

// printJSON runs a GET and prints the answer indented.
func printJSON(cmd *cobra.Command, path string) error {
	c, err := clientFor(cmd)
	if err != nil {
		return err
	}
	var resp map[string]any
	if _, err := c.do(http.MethodGet, path, nil, nil, &resp); err != nil {
		return err
	}
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(resp)
}

func runStats(cmd *cobra.Command, _ []string) error  { return printJSON(cmd, "/stats") }
func runHealth(cmd *cobra.Command, _ []string) error { return printJSON(cmd, "/health") }

func runChangePassword(cmd *cobra.Command, args []string) error {
	c, err := clientFor(cmd)
	if err != nil {
		return err
	}
	password := args[0]
	if password == "-" {
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("reading the new password from stdin: %v", err)
		}
		password = strings.TrimRight(line, "\r\n")
	}
	user, _ := cmd.Flags().GetString("user")
	if user == "" {
		user = c.username
	}
	if _, err := c.do(http.MethodPost, "/auth/password", nil, passwordRequest{Username: user, NewPassword: password}, nil); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "password of %s changed\n", user)
	return nil
}
