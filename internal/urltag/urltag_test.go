package urltag

import "testing"

func TestFor(t *testing.T) {
	for _, tc := range []struct{ host, path, want string }{
		{"Example.com", "/a/b", "url:example.com/a/b"},
		{"example.com:443", "", "url:example.com/"},
		{"example.com:80", "/x", "url:example.com/x"},
		{"example.com:8080", "/x", "url:example.com:8080/x"},
	} {
		if got := For(tc.host, tc.path); got != tc.want {
			t.Errorf("For(%q, %q) = %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}
