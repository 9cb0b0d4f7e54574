package memcached

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestMetaGetFlags(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	c.do("ms k 5 F9 T100\r\nhello\r\n", "HD\r\n")
	m := c.match("mg k s v f t c k Oxyz h l\r\n", `VA 5 s5 f9 t100 c(\d+) kk Oxyz h0 l0`)
	c.read(len("hello\r\n"))
	cas := m[1]
	srv.clock.Advance(7)
	c.do("mg k h l t\r\n", "HD h1 l7 t93\r\n")
	// C: no value when the client's copy is current (memcached 1.6.19+).
	c.do("mg k v C"+cas+"\r\n", "HD\r\n")
	c.do("mg k v C1\r\n", "VA 5\r\nhello\r\n")
	// T touches, u reads without bumping.
	c.do("mg k T0 t\r\n", "HD t-1\r\n")
	srv.clock.Advance(3)
	c.do("mg k u l\r\n", "HD l3\r\n")
	c.do("mg k u l\r\n", "HD l3\r\n")
	// q hides misses only; O and k come back on a miss.
	c.do("mg none v q\r\nmg k q\r\nmn\r\n", "HD\r\nMN\r\n")
	c.do("mg none k O1\r\n", "EN knone O1\r\n")
	c.do("mg k P/path L/x\r\n", "HD\r\n")
}

func TestMetaGetWinTokens(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	// N: the first client wins the right to fill a miss, the others see
	// that someone has.
	c.do("mg page v N30 t\r\n", "VA 0 t30 W\r\n\r\n")
	c.do("mg page v N30\r\n", "VA 0 Z\r\n\r\n")
	c.do("ms page 4 T60\r\nfull\r\n", "HD\r\n")
	c.do("mg page v N30\r\n", "VA 4\r\nfull\r\n")
	// R: near the end of its life the entry is handed out for recaching
	// once.
	c.do("mg page R30 t\r\n", "HD t60\r\n")
	srv.clock.Advance(40)
	c.do("mg page R30 t\r\n", "HD t20 W\r\n")
	c.do("mg page R30 t\r\n", "HD t20 Z\r\n")
	// md I: stale, the next reader wins, later ones see X and Z.
	c.do("md page I T30\r\n", "HD\r\n")
	c.do("mg page v t\r\n", "VA 4 t30 X W\r\nfull\r\n")
	c.do("mg page v\r\n", "VA 4 Z X\r\nfull\r\n")
	// E: the vivified entry gets the client's CAS.
	c.do("mg other c N10 E12345\r\n", "HD c12345 W\r\n")
	// A late write of older data, with I, is kept but marked stale.
	c.do("ms late 1\r\na\r\n", "HD\r\n")
	older := c.match("mg late c\r\n", `HD c(\d+)`)[1]
	newer := c.match("ms late 1 c\r\nb\r\n", `HD c(\d+)`)[1]
	c.do("mg late c\r\n", "HD c"+newer+"\r\n")
	c.do("ms late 1 C"+older+"\r\nc\r\n", "EX\r\n")
	c.do("ms late 1 C"+older+" I\r\nc\r\n", "HD\r\n")
	c.do("mg late v\r\n", "VA 1 X W\r\nc\r\n")
}

func TestMetaSetModes(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	c.do("ms a 3 MS s c q\r\nabc\r\nmn\r\n", "MN\r\n")
	c.do("ms a 2 MA s k\r\nde\r\n", "HD s5 ka\r\n")
	c.do("ms a 1 MP s\r\n<\r\n", "HD s6\r\n")
	c.do("ms b 1 MA\r\nx\r\n", "NS\r\n")
	c.do("ms b 1 MA N50\r\nx\r\n", "HD\r\n")
	c.do("mg b v t\r\n", "VA 1 t50\r\nx\r\n")
	c.do("ms a 1 ME\r\nx\r\n", "NS\r\n")
	c.do("ms c 1 MR\r\nx\r\n", "NS\r\n")
	c.do("ms c 1 C5\r\nx\r\n", "NF\r\n")
	c.do("ms a 1 C5\r\nx\r\n", "EX\r\n")
	c.do("ms a 1 C0\r\nx\r\n", "EX\r\n")
	c.do("ms n 1 E99 c\r\nx\r\n", "HD c99\r\n")
	c.do("ms n 1 C99 c E100\r\ny\r\n", "HD c100\r\n")
	c.do("mg a v\r\n", "VA 6\r\n<abcde\r\n")
	c.do("ms a 2 MX\r\nzz\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n")
	c.do("ms a 2 MSS\r\nzz\r\n", "CLIENT_ERROR incorrect length for M token\r\n")
	c.do("ms a 2 v v\r\nzz\r\n", "CLIENT_ERROR duplicate flag\r\n")
	c.do("ms a 2 Cx\r\nzz\r\n", "CLIENT_ERROR bad token in command line format\r\n")
	c.do("ms a 2 O"+strings.Repeat("o", 32)+"\r\nzz\r\n", "CLIENT_ERROR opaque token too long\r\n")
	c.do("ms a 2 q\r\nzzz\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\n")
	c.do("mg a v\r\n", "VA 6\r\n<abcde\r\n")
}

func TestMetaDelete(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	c.do("ms d 5 F3 T100 Gt1,t2\r\nvalue\r\n", "HD\r\n")
	m := c.match("mg d c\r\n", `HD c(\d+)`)
	// x empties the value and keeps the entry, its tags and its CAS.
	c.do("md d x F7 q\r\nmn\r\n", "MN\r\n")
	c.do("mg d v f t c g\r\n", "VA 0 f7 t-1 c"+m[1]+" gt1,t2\r\n\r\n")
	c.do("md d I E77 k Oo\r\n", "HD kd Oo\r\n")
	c.do("mg d c\r\n", "HD c77 X W\r\n")
	c.do("md d C1\r\n", "EX\r\n")
	c.do("md d C0\r\n", "EX\r\n")
	c.do("md d C77 q\r\nmd d\r\n", "NF\r\n")
	c.do("md d\r\n", "NF\r\n")
	c.do("md d Qx\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n")
	if n := srv.st.TagCount("t1"); n != 0 {
		t.Fatalf("tag t1 still lists %d keys", n)
	}
}

func TestMetaArithmetic(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	c.do("ma n\r\n", "NF\r\n")
	c.do("ma n N60 J18446744073709551615 v t\r\n", "VA 20 t60\r\n18446744073709551615\r\n")
	c.do("ma n v\r\n", "VA 1\r\n0\r\n")
	c.do("ma n M- D5 v\r\n", "VA 1\r\n0\r\n")
	c.do("ma n M+ D12 v T0 t\r\n", "VA 2 t-1\r\n12\r\n")
	m := c.match("ma bg== c k b\r\n", `HD c(\d+) kbg== b`)
	c.do("ma n C"+m[1]+" E5 c v\r\n", "VA 2 c5\r\n14\r\n")
	c.do("ma n C4\r\n", "EX\r\n")
	c.do("ma n q\r\nmn\r\n", "MN\r\n")
	c.do("mg n v\r\n", "VA 2\r\n15\r\n")
	c.do("ma n MX\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n")
	c.do("ms s 1\r\nx\r\n", "HD\r\n")
	c.do("ma s q\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
}

func TestMetaDebugAndBase64(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	bin := "key with\x00binary\r\nbytes"
	b64 := base64.StdEncoding.EncodeToString([]byte(bin))
	tags := base64.StdEncoding.EncodeToString([]byte("тег")) + "," + base64.RawStdEncoding.EncodeToString([]byte("t"))
	c.do("ms "+b64+" 3 b k T30 G"+tags+"\r\nabc\r\n", "HD k"+b64+" b\r\n")
	if it, ok := srv.st.Get(bin); !ok || string(it.Value) != "abc" || !slices.Equal(it.Tags, []string{"тег", "t"}) {
		t.Fatalf("stored %+v %v", it, ok)
	}
	c.do("mg "+b64+" b v g\r\n", "VA 3 g"+base64.StdEncoding.EncodeToString([]byte("тег"))+",dA==\r\nabc\r\n")
	// A key must be padded, as memcached's decoder wants it.
	c.do("mg "+strings.TrimRight(b64, "=")+" b s\r\n", "CLIENT_ERROR error decoding key\r\n")
	c.match("me "+b64+" b\r\n", "ME "+regexp.QuoteMeta(b64)+fmt.Sprintf(` exp=30 la=0 cas=\d+ fetch=yes cls=1 size=%d tags=%s,t`, len(bin)+3, url.QueryEscape("тег")))
	c.do("me nope\r\n", "EN\r\n")
	c.do("me\r\n", "CLIENT_ERROR bad command line format\r\n")
	c.do("mg !!!! b\r\n", "CLIENT_ERROR error decoding key\r\n")
	c.do("mg a\x00b v\r\n", "CLIENT_ERROR bad command line format\r\n")
	c.do("mg a\x01b v\r\n", "EN\r\n") // other control characters are key bytes
	c.do("ms k 1 Gbad!,b64 b\r\nx\r\n", "CLIENT_ERROR error decoding key\r\n")
	c.do("ms aw== 1 Gbad! b\r\nx\r\n", "CLIENT_ERROR bad base64 in tag list\r\n")
}
