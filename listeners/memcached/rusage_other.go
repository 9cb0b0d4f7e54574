//go:build !unix

package memcached

// rusage is not available on this platform; stats leave the lines out.
func rusage() (user, system string, ok bool) { return "", "", false }
