package tabproto

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/listeners/framedtest"
)

var framedSeeds = []string{
	"PUT\tuser:1\t60000\tusers,trial\thello world\nGET\tuser:1\n",
	"ADD\tk\t-\t-\t1\nINCR\tk\t5\nDECR\tk\nINV_TAG\tt\nKEYS\tt\n",
	"STATS\nFLUSH\nTTL\tk\nTOUCH\tk\t5\nTAGS_OF\tk\nAUTH\tu\tp\nPING\n",
	"GET\t" + strings.Repeat("x", 300) + "\nDEL\tk\n\r\n\n",
	"PUT\tbig\t-\t-\t" + strings.Repeat("v", 9000) + "\nGET\tbig\nPING\n",
	"put\tk\t-1\t,,\t\tv\nINCR\tk\t9223372036854775807\nINCR\tk\nPING",
}

// runFramed answers input as an event loop does, reading with a buffer of
// size bytes and releasing chunk bytes at a time, and returns the replies.
func runFramed(t testing.TB, input string, size, chunk int) string {
	t.Helper()
	st := newStore(t, &clock{now: 1_000_000})
	app := testutil.NewApp(st, noUsers(t))
	var out bytes.Buffer
	f := framedtest.NewFeed([]byte(input))
	s := listeners.NewSession(nil, bufio.NewReaderSize(f, size), bufio.NewWriter(&out), st, app, false)
	s.Limits = listeners.Limits{MaxLineLength: 4096, MaxValueSize: 2048}
	c := Protocol{}.NewFramedConn(s)
	defer c.Close()
	if err := framedtest.Drive(t, c, s, f, chunk); err != nil {
		t.Fatalf("Drive: %v", err)
	}
	return out.String()
}

// checkFramed compares the event loop's replies to Serve's.
func checkFramed(t *testing.T, input string) {
	st := newStore(t, &clock{now: 1_000_000})
	app := testutil.NewApp(st, noUsers(t))
	want := run(t, app, false, listeners.Limits{MaxLineLength: 4096, MaxValueSize: 2048}, input)
	for _, size := range []int{64, 8192} {
		for _, chunk := range []int{1, 7, 64, 4096, len(input) + 1} {
			if got := runFramed(t, input, size, chunk); got != want {
				t.Fatalf("buffer %d, chunks of %d: the loop answered\n%q\nServe answered\n%q", size, chunk, got, want)
			}
		}
	}
}

func TestFramedMatchesServe(t *testing.T) {
	for _, input := range framedSeeds {
		checkFramed(t, input)
	}
}

func FuzzFramed(f *testing.F) {
	for _, seed := range framedSeeds {
		f.Add(seed)
	}
	f.Fuzz(checkFramed)
}
