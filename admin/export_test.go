package admin

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// RunCLI runs `caddy tagcache <args>` in-process with stdin and returns
// what it printed and its error (non-nil is a non-zero exit status). It is
// exported for the integration tests, in package admin_test because they
// import the app, which imports this package.
func RunCLI(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := &cobra.Command{Use: "tagcache"}
	setUpCommand(cmd)
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetIn(strings.NewReader(stdin))
	err := cmd.Execute()
	return out.String(), err
}
