package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// parseAll reads every command from data with a reader whose buffer is
// small, so that long lines take the slow path, and returns the commands
// and the error that ended the input.
func parseAll(data []byte, unauth bool) ([][]string, error) {
	rd := newReader(bufio.NewReaderSize(bytes.NewReader(data), 16), 256, 1024, func() bool { return unauth })
	var cmds [][]string
	for {
		args, err := rd.read()
		if err != nil {
			return cmds, err
		}
		if len(args) == 0 {
			continue // an empty request, which Redis skips
		}
		cmd := make([]string, len(args))
		for i, a := range args {
			cmd[i] = string(a)
		}
		cmds = append(cmds, cmd)
	}
}

func TestReaderCases(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want [][]string
		err  string
	}{
		{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", [][]string{{"GET", "k"}}, ""},
		{"GET k\r\nSET a b\n", [][]string{{"GET", "k"}, {"SET", "a", "b"}}, ""},
		{"SET \"a b\" 'c\\'d' \"\\x41\\n\"\r\n", [][]string{{"SET", "a b", "c'd", "A\n"}}, ""},
		{"\r\n*0\r\n*-1\r\nPING\r\n", [][]string{{"PING"}}, ""},
		{"*1\r\n$0\r\n\r\n", [][]string{{""}}, ""},
		{"*1\r\n$4\r\nPI", nil, "unexpected EOF"},
		{"*x\r\n", nil, "Protocol error: invalid multibulk length"},
		{"*1\r\n:1\r\n", nil, "Protocol error: expected '$', got ':'"},
		{"*1\r\n$1025\r\n", nil, "Protocol error: invalid bulk length"},
		{"ECHO \"a\r\n", nil, "Protocol error: unbalanced quotes in request"},
		{strings.Repeat("x", 300) + "\r\n", nil, "Protocol error: too big inline request"},
		{"*1\r\n$" + strings.Repeat("1", 300) + "\r\n", nil, "Protocol error: too big bulk count string"},
	} {
		cmds, err := parseAll([]byte(tc.in), false)
		if tc.err == "" && err == io.EOF {
			err = nil
		}
		if (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%.40q: error %v, want %q", tc.in, err, tc.err)
		}
		if !slices.EqualFunc(cmds, tc.want, slices.Equal) {
			t.Errorf("%.40q: %q, want %q", tc.in, cmds, tc.want)
		}
	}
}

// FuzzReader feeds arbitrary input to the parser, which must never panic
// and must keep its limits, and checks that any list of arguments, encoded
// as RESP, parses back to itself.
func FuzzReader(f *testing.F) {
	for _, seed := range []string{
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"SET \"a b\" 'c' \\x41\r\n",
		"*1\r\n$-1\r\n*0\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\x00ue\r\n",
		"ECHO \"\\x4g\"\r\n",
		"*99999999999999999999\r\n",
		"\xff\xfe*\r\n$\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, unauth := range []bool{false, true} {
			cmds, err := parseAll(data, unauth)
			var perr protocolError
			if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &perr) {
				t.Fatalf("unexpected error %v", err)
			}
			for _, cmd := range cmds {
				if unauth && len(cmd) > unauthMaxArgs {
					t.Fatalf("%d arguments before auth", len(cmd))
				}
				for _, a := range cmd {
					if len(a) > 1024 {
						t.Fatalf("an argument of %d bytes passed the 1024-byte limit", len(a))
					}
				}
			}
		}
		// Round trip: the input's bytes, split at 0xff, as arguments.
		args := strings.Split(string(data), "\xff")
		if len(args) > 64 {
			return
		}
		var enc strings.Builder
		for _, a := range args {
			if len(a) > 1024 {
				return
			}
		}
		enc.WriteString(encode(args...))
		cmds, err := parseAll([]byte(enc.String()), false)
		if err != io.EOF || len(cmds) != 1 || !slices.Equal(cmds[0], args) {
			t.Fatalf("round trip of %q: %q, %v", args, cmds, err)
		}
	})
}

// simpleMatch is a reference matcher for patterns of literals, '?' and
// '*' only.
func simpleMatch(p, s string) bool {
	if p == "" {
		return s == ""
	}
	switch p[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if simpleMatch(p[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && simpleMatch(p[1:], s[1:])
	}
	return s != "" && s[0] == p[0] && simpleMatch(p[1:], s[1:])
}

func TestGlobCases(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		nocase     bool
		want       bool
	}{
		{"h?llo", "hello", false, true},
		{"h?llo", "hllo", false, false},
		{"h*llo", "heeeello", false, true},
		{"h[ae]llo", "hallo", false, true},
		{"h[ae]llo", "hillo", false, false},
		{"h[^e]llo", "hallo", false, true},
		{"h[^e]llo", "hello", false, false},
		{"h[a-b]llo", "hbllo", false, true},
		{"h[b-a]llo", "hallo", false, true},
		{"\\*", "*", false, true},
		{"\\*", "x", false, false},
		{"[\\]]", "]", false, true},
		{"a[", "a[", false, false},
		{"a[bc", "ab", false, true}, // an unterminated class still matches, as in Redis
		{"a\\", "a\\", false, true},
		{"*", "", false, false}, // Redis's matcher never matches an empty string
		{"", "", false, true},
		{"HeLLo", "hello", true, true},
		{"[A-C]x", "bx", true, true},
		{"[A-C]x", "bx", false, false},
		{strings.Repeat("*a", 30) + "b", strings.Repeat("a", 60), false, false},
	} {
		if got := globMatch(tc.pattern, tc.s, tc.nocase); got != tc.want {
			t.Errorf("globMatch(%q, %q, %v) = %v", tc.pattern, tc.s, tc.nocase, got)
		}
	}
}

// escapeGlob makes a pattern that matches s literally.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte("*?[]\\^-", s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// FuzzGlob checks the matcher never panics and agrees with a reference
// matcher where one is simple, and with itself on escaped literals.
func FuzzGlob(f *testing.F) {
	f.Add("h*llo", "hello")
	f.Add("h[a-z]l?o", "hello")
	f.Add("[^", "x")
	f.Add("\\", "\\")
	f.Add("*a*b*c", "aXbYc")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		got := globMatch(pattern, s, false)
		globMatch(pattern, s, true)
		if s == "" {
			return // Redis's matcher matches no empty string; keys are never empty
		}
		if !strings.ContainsAny(pattern, "[]\\") {
			if want := simpleMatch(pattern, s); got != want {
				t.Fatalf("globMatch(%q, %q) = %v, reference %v", pattern, s, got, want)
			}
		}
		if !globMatch(escapeGlob(s), s, false) {
			t.Fatalf("escaped %q does not match itself", s)
		}
		if !globMatch("*", s, false) {
			t.Fatalf("* does not match %q", s)
		}
	})
}
