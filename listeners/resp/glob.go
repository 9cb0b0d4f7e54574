package resp

// globMatch reports whether s matches the glob pattern as Redis's
// stringmatchlen does (KEYS, SCAN MATCH, PSUBSCRIBE, PUBSUB CHANNELS,
// CONFIG GET): '*' any run, '?' one byte, '[abc]' '[^abc]' '[a-z]' classes,
// '\' escapes the next byte; nocase folds ASCII letters. It follows Redis
// byte for byte, including the odd corners (an unterminated class, an
// escape at the end of the pattern) and its protections against patterns
// that would take exponential time.
func globMatch(pattern, s string, nocase bool) bool {
	skipLonger := false
	return globMatchAt(pattern, 0, s, nocase, &skipLonger, 0)
}

// globMatchAt matches pattern[pi:] against s. at reads past the end as the
// NUL that ends Redis's C strings, which its code relies on.
func globMatchAt(pattern string, pi int, s string, nocase bool, skipLonger *bool, nesting int) bool {
	// Protection against abusive patterns, as Redis has.
	if nesting > 1000 {
		return false
	}
	at := func(i int) byte {
		if i < len(pattern) {
			return pattern[i]
		}
		return 0
	}
	si := 0
	for pi < len(pattern) && si < len(s) {
		switch pattern[pi] {
		case '*':
			for pi < len(pattern) && at(pi+1) == '*' {
				pi++
			}
			if pi == len(pattern)-1 {
				return true
			}
			for si < len(s) {
				if globMatchAt(pattern, pi+1, s[si:], nocase, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				si++
			}
			// Nothing after this '*' matches anywhere in the rest of s,
			// so no earlier '*' can help by matching more.
			*skipLonger = true
			return false
		case '?':
			si++
		case '[':
			pi++
			not := at(pi) == '^'
			if not {
				pi++
			}
			match := false
			for {
				if at(pi) == '\\' && len(pattern)-pi >= 2 {
					pi++
					if pattern[pi] == s[si] {
						match = true
					}
				} else if at(pi) == ']' {
					break
				} else if pi >= len(pattern) {
					pi--
					break
				} else if len(pattern)-pi >= 3 && pattern[pi+1] == '-' {
					lo, hi, c := pattern[pi], pattern[pi+2], s[si]
					if lo > hi {
						lo, hi = hi, lo
					}
					if nocase {
						lo, hi, c = lower(lo), lower(hi), lower(c)
					}
					pi += 2
					if c >= lo && c <= hi {
						match = true
					}
				} else if pattern[pi] == s[si] || nocase && lower(pattern[pi]) == lower(s[si]) {
					match = true
				}
				pi++
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			si++
		default:
			if pattern[pi] == '\\' && len(pattern)-pi >= 2 {
				pi++
			}
			if pattern[pi] != s[si] && !(nocase && lower(pattern[pi]) == lower(s[si])) {
				return false
			}
			si++
		}
		pi++
		if si == len(s) {
			for at(pi) == '*' {
				pi++
			}
			break
		}
	}
	return pi >= len(pattern) && si == len(s)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
