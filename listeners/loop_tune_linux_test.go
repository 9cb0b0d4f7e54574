//go:build linux

package listeners

import (
	"fmt"
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

func TestTunerKeepsALoopThatHelps(t *testing.T) {
	r := newTunerRun(t, 2)
	r.window(1, 100, 0.5, 1)  // saturated once: could be a burst
	r.window(1, 100, 0.5, 2)  // twice: try a second loop
	r.window(1, 120, 0.5, 2)  // settling
	r.window(1, 110, 0.5, 2)  // +10%: it stays
	r.window(1, 110, 0.5, 2)  // at max
	r.window(0.5, 60, 1.0, 2) // the two loops would be busy 1.0 as one: no change
}

func TestTunerTakesBackALoopThatDoesNotHelp(t *testing.T) {
	r := newTunerRun(t, 4)
	r.window(1, 100, 0.5, 1)
	r.window(1, 100, 0.5, 2)
	r.window(1, 100, 0.5, 2)
	r.window(1, 103, 0.5, 1) // +3%: taken back
	r.wait(minBackoff-tuneWindow, 1)
	r.window(1, 100, 0.5, 2) // the backoff has passed: tried again
	r.window(1, 100, 0.5, 2)
	r.window(1, 90, 0.5, 1)
	r.wait(2*minBackoff-tuneWindow, 1) // the backoff doubled
	r.window(1, 100, 0.5, 2)
}

func TestTunerNeedsAnIdleCPU(t *testing.T) {
	r := newTunerRun(t, 2)
	for range 8 {
		r.window(1, 100, minIdleCPUs/2, 1)
	}
	r.window(1, 100, -1, 1) // unknown: the try tells
	r.window(1, 100, -1, 2)
}

func TestTunerNeedsEveryLoopSaturated(t *testing.T) {
	r := newTunerRun(t, 3)
	r.window(1, 100, 1, 1)
	r.window(1, 100, 1, 2)
	r.window(1, 100, 1, 2)
	r.window(1, 150, 1, 2)
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
	r.window(1, 100, 1, 1)
	r.window(1, 100, 1, 2)
	r.window(1, 100, 1, 2)
	r.window(1, 150, 1, 2)
	for range shrinkWindows - 1 {
		r.window(0.2, 30, 1.5, 2)
	}
	r.window(0.6, 80, 1, 2) // a busier window starts the count again
	for range shrinkWindows - 1 {
		r.window(0.2, 30, 1.5, 2)
	}
	r.window(0.2, 30, 1.5, 1)
}

// TestTunerTriesPromptlyAfterAQuietSpell: a failed try delays the next,
// unless the load goes away in between (a new load gets its try).
func TestTunerTriesPromptlyAfterAQuietSpell(t *testing.T) {
	r := newTunerRun(t, 2)
	r.window(1, 100, 1, 1)
	r.window(1, 100, 1, 2)
	r.window(1, 100, 1, 2)
	r.window(1, 100, 1, 1)
	r.window(0.1, 10, 1.8, 1)
	r.window(1, 100, 1, 1)
	r.window(1, 100, 1, 2)
}

// waitLoads waits until each loop serves the number of connections given.
func waitLoads(t *testing.T, l *Listener, want ...int32) {
	t.Helper()
	for i := 0; ; i++ {
		got := make([]int32, len(l.loops.loops))
		for j, lp := range l.loops.loops {
			got[j] = lp.load.Load()
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if i == 2000 {
			t.Fatalf("loops serve %v connections; want %v", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLoopResizeMovesConnections moves connections between loops, one of
// them in the middle of a command: each goes on as if nothing happened.
func TestLoopResizeMovesConnections(t *testing.T) {
	l := startListener(t, framedLineProtocol{&lineProtocol{}}, 2, 10, time.Minute)
	clients := make([]*testClient, 6)
	for i := range clients {
		clients[i] = dial(t, l)
		clients[i].send("hello\n")
		clients[i].expect("> hello\n")
	}
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

// TestLoopCloseWhileResizing closes connections while they move between
// loops: from the loop that serves them (a command), from other goroutines
// (net.Conn's Close) and by stopping the listener. Every one is closed.
func TestLoopCloseWhileResizing(t *testing.T) {
	l := startListener(t, framedLineProtocol{&lineProtocol{}}, 2, 100, time.Minute)
	clients := make([]*testClient, 60)
	for i := range clients {
		clients[i] = dial(t, l)
		clients[i].send("hello\n")
		clients[i].expect("> hello\n")
	}
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
			time.Sleep(50 * time.Microsecond)
		}
	})
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
	close(done)
	wg.Wait()
	for _, c := range clients[40:] {
		c.expectClosed()
	}
}
