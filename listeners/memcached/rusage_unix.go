//go:build unix

package memcached

import (
	"fmt"
	"syscall"
)

// rusage returns the process's user and system CPU time as memcached's
// stats print them (seconds.microseconds).
func rusage() (user, system string, ok bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return "", "", false
	}
	return fmt.Sprintf("%d.%06d", ru.Utime.Sec, ru.Utime.Usec), fmt.Sprintf("%d.%06d", ru.Stime.Sec, ru.Stime.Usec), true
}
