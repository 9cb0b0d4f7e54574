package memcached

import "time"

// maxRelativeExptime is memcached's bound on relative expiration times: 30
// days, in seconds. A larger exptime is an absolute Unix time.
const maxRelativeExptime = 60 * 60 * 24 * 30

// expires converts a memcached exptime in seconds (0: never; negative:
// already expired; up to 30 days: relative; beyond: absolute Unix time) to
// the store's absolute expiry in Unix ms. A time already past stores the
// entry expired, which removes it.
func (c *conn) expires(exptime int64) int64 {
	switch {
	case exptime == 0:
		return 0
	case exptime < 0:
		return -1
	case exptime <= maxRelativeExptime:
		return c.st.Now() + exptime*1000
	}
	return exptime * 1000
}

// flushDelay converts the delay of flush_all, an exptime, to a duration;
// zero or negative means now.
func (c *conn) flushDelay(exptime int64) time.Duration {
	if exptime <= 0 {
		return 0
	}
	return time.Duration(c.expires(exptime)-c.st.Now()) * time.Millisecond
}

// ttl returns the seconds left before expires (rounded up), or -1 for an
// entry that never expires, as the meta t flag reports it.
func (c *conn) ttl(expires int64) int64 {
	if expires == 0 {
		return -1
	}
	left := expires - c.st.Now()
	if left < 0 {
		return 0
	}
	return (left + 999) / 1000
}

// idle returns the whole seconds since lastAccess, a Unix ms time.
func (c *conn) idle(lastAccess int64) int64 {
	if d := c.st.Now() - lastAccess; d > 0 {
		return d / 1000
	}
	return 0
}
