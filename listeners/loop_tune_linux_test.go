//go:build linux

package listeners

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// tunerRun feeds a tuner windows and checks the loops it asks for.
type tunerRun struct {
	t  *testing.T
	tu *tuner
	at time.Time
}

func newTunerRun(t *testing.T, max int) *tunerRun {
	return &tunerRun{t: t, tu: newTuner(max), at: time.Unix(1e9, 0)}
}

// window shows the tuner one window in which every active loop was busy
// for busy of it, and checks the number of loops it returns.
func (r *tunerRun) window(busy, rate, idleCPUs float64, want int) {
	r.t.Helper()
	r.at = r.at.Add(tuneWindow)
	s := tuneSample{at: r.at, rate: rate, idleCPUs: idleCPUs, busy: make([]float64, r.tu.active)}
	for i := range s.busy {
		s.busy[i] = busy
	}
	if got := r.tu.step(s); got != want {
		r.t.Fatalf("after window at +%v (busy %.2f, %.0f/s, %.2f idle CPUs): %d loops; want %d",
			r.at.Sub(time.Unix(1e9, 0)), busy, rate, idleCPUs, got, want)
	}
}

// wait shows the tuner saturated windows with an idle CPU for d, and
// checks that it keeps the loops it has: it is backing off.
func (r *tunerRun) wait(d time.Duration, loops int) {
	r.t.Helper()
	for end := r.at.Add(d); r.at.Before(end); {
		r.window(1, 100, 1, loops)
	}
}

// try shows the tuner saturated windows with an idle CPU at rate 100
// until it adds a loop, then windows at rate with that loop, and checks
// that it keeps the loops it ends with.
func (r *tunerRun) try(rate float64, want int) {
	r.t.Helper()
	loops := r.tu.active
	for range growWindows - 1 { // the first may include the load's ramp-up
		r.window(1, 100, 1, loops)
	}
	r.window(1, 100, 1, loops+1)
	r.window(1, 2*rate, 1, loops+1) // settling: not counted
	r.window(1, rate, 1, loops+1)
	r.window(1, rate, 1, want)
}

func TestTunerKeepsALoopThatHelps(t *testing.T) {
	r := newTunerRun(t, 2)
	r.try(115, 2)
	r.window(1, 115, 1, 2)    // at max
	r.window(0.5, 60, 1.0, 2) // the two loops would be busy 1.0 as one: no change
}

func TestTunerTakesBackALoopThatDoesNotHelp(t *testing.T) {
	r := newTunerRun(t, 4)
	r.try(105, 1) // +5%: taken back
	r.wait(minBackoff-tuneWindow, 1)
	r.window(1, 100, 1, 2) // the backoff has passed: tried again
	r.window(1, 100, 1, 2)
	r.window(1, 90, 1, 2)
	r.window(1, 90, 1, 1)
	r.wait(2*minBackoff-tuneWindow, 1) // the backoff doubled
	r.window(1, 100, 1, 2)
}

func TestTunerNeedsAnIdleCPU(t *testing.T) {
	r := newTunerRun(t, 2)
	for range 8 {
		r.window(1, 100, minIdleCPUs/2, 1)
	}
	r.window(1, 100, -1, 1) // unknown: the try tells
	r.window(1, 100, -1, 1)
	r.window(1, 100, -1, 2)
}

func TestTunerNeedsEveryLoopSaturated(t *testing.T) {
	r := newTunerRun(t, 3)
	r.try(150, 2)
	s := tuneSample{busy: []float64{1, saturatedBusy - 0.1}, rate: 150, idleCPUs: 1}
	for range 8 {
		r.at = r.at.Add(tuneWindow)
		s.at = r.at
		if got := r.tu.step(s); got != 2 {
			t.Fatalf("one loop of two saturated: %d loops; want 2", got)
		}
	}
}

func TestTunerRemovesLoopsWhenTheLoadDrops(t *testing.T) {
	r := newTunerRun(t, 2)
	r.try(150, 2)
	for range shrinkWindows - 1 {
		r.window(0.2, 30, 1.5, 2)
	}
	r.window(0.6, 80, 1, 2) // a busier window starts the count again
	for range shrinkWindows - 1 {
		r.window(0.2, 30, 1.5, 2)
	}
	r.window(0.2, 30, 1.5, 1)
}

// TestTunerBackoffOutlastsAQuietSpell: a load that comes back after a
// pause is most likely the same load, which a further loop did not help.
func TestTunerBackoffOutlastsAQuietSpell(t *testing.T) {
	r := newTunerRun(t, 2)
	r.try(100, 1)
	r.window(0.1, 10, 1.8, 1)
	r.wait(minBackoff-2*tuneWindow, 1)
	r.window(1, 100, 1, 2)
}

// waitLoads waits until each loop serves the number of connections given.
func waitLoads(t *testing.T, l *Listener, want ...int32) {
	t.Helper()
	eventually(t, func() (bool, string) {
		got := make([]int32, len(l.loops.loops))
		for j, lp := range l.loops.loops {
			got[j] = lp.load.Load()
		}
		return slices.Equal(got, want), fmt.Sprintf("loops serve %v connections; want %v", got, want)
	})
}

// greetedClients connects n clients, each of which has had a command
// answered, so that a loop serves it.
func greetedClients(t *testing.T, l *Listener, n int) []*testClient {
	t.Helper()
	clients := make([]*testClient, n)
	for i := range clients {
		clients[i] = dial(t, l)
		clients[i].send("hello\n")
		clients[i].expect("> hello\n")
	}
	return clients
}

// TestLoopResizeMovesConnections moves connections between loops, one of
// them in the middle of a command: each goes on as if nothing happened.
func TestLoopResizeMovesConnections(t *testing.T) {
	before := activeLoops.Load()
	l := startListener(t, framedLineProtocol{&lineProtocol{}}, 2, 10, time.Minute)
	clients := greetedClients(t, l, 6)
	waitLoads(t, l, 3, 3)
	clients[0].send("par")
	clients[5].send("par")
	time.Sleep(10 * time.Millisecond) // the loops buffer the halves

	l.loops.resize(1)
	waitLoads(t, l, 6, 0)
	if st := statsOf(t, l); st.EventLoops != 1 {
		t.Errorf("stats show %d event loops; want 1", st.EventLoops)
	}
	clients[0].send("tial\n")
	clients[5].send("tial\n")
	clients[0].expect("> partial\n")
	clients[5].expect("> partial\n")
	c := dial(t, l) // new connections go to the active loop
	waitLoads(t, l, 7, 0)

	l.loops.resize(2)
	waitLoads(t, l, 4, 3)
	for i, cl := range append(clients, c) {
		cl.send(fmt.Sprintf("after %d\n", i))
		cl.expect(fmt.Sprintf("> after %d\n", i))
	}
	if st := statsOf(t, l); st.EventLoops != 2 || st.CurrentConnections != 7 {
		t.Errorf("stats show %d event loops and %d connections; want 2 and 7", st.EventLoops, st.CurrentConnections)
	}
	if got := activeLoops.Load() - before; got != 2 {
		t.Errorf("%d loops counted active; want 2", got)
	}
	l.Stop()
	if got := activeLoops.Load() - before; got != 0 {
		t.Errorf("%d loops counted active after Stop; want 0", got)
	}
}

// serverConn returns the listener's end of a client's connection.
func serverConn(t *testing.T, l *Listener, c *testClient) tracked {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for sc := range l.conns {
		if lc, ok := sc.(*loopConn); ok && lc.RemoteAddr().String() == c.conn.LocalAddr().String() {
			return sc
		}
	}
	t.Fatalf("the listener has no connection from %s", c.conn.LocalAddr())
	return nil
}

// keepResizing switches the listener between one loop and two every
// interval until the function it returns is called.
func keepResizing(l *Listener, every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for k := 1; ; k = 3 - k {
			select {
			case <-done:
				return
			default:
			}
			l.loops.resize(k)
			time.Sleep(every)
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// TestLoopCloseWhileResizing closes connections while they move between
// loops: from the loop that serves them (a command), from other goroutines
// (net.Conn's Close) and by stopping the listener. Every one is closed.
func TestLoopCloseWhileResizing(t *testing.T) {
	l := startListener(t, framedLineProtocol{&lineProtocol{}}, 2, 100, time.Minute)
	clients := greetedClients(t, l, 60)
	stopResizing := keepResizing(l, 50*time.Microsecond)
	for _, c := range clients[:20] {
		c.send("CLOSE\n")
		c.expect("> CLOSE\n")
		c.expectClosed()
	}
	for _, c := range clients[20:40] {
		serverConn(t, l, c).(*loopConn).Close()
		c.expectClosed()
	}
	l.Stop()
	stopResizing()
	for _, c := range clients[40:] {
		c.expectClosed()
	}
}

// TestLoopResizeUnderLoad moves pipelining connections between loops
// over and over: every command is answered once, in order.
func TestLoopResizeUnderLoad(t *testing.T) {
	l := startListener(t, framedLineProtocol{&lineProtocol{}}, 2, 100, time.Minute)
	stopResizing := keepResizing(l, 200*time.Microsecond)
	const commands, burst = 3000, 30
	var clients sync.WaitGroup
	for i := range 8 {
		c := dial(t, l)
		clients.Go(func() {
			for sent := 0; sent < commands; sent += burst {
				var b strings.Builder
				for j := sent; j < sent+burst; j++ {
					fmt.Fprintf(&b, "c%d-%d\n", i, j)
				}
				if _, err := io.WriteString(c.conn, b.String()); err != nil {
					t.Error(err)
					return
				}
				for j := sent; j < sent+burst; j++ {
					want := fmt.Sprintf("> c%d-%d\n", i, j)
					if got, err := c.r.ReadString('\n'); err != nil || got != want {
						t.Errorf("read %q, %v; want %q", got, err, want)
						return
					}
				}
			}
		})
	}
	clients.Wait()
	stopResizing()
}
