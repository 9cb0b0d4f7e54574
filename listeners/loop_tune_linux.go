//go:build linux

package listeners

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// With event_loops automatic, a listener starts with one loop, which
// answers requests at the least CPU per request, and a tuner adds loops
// while they help. A loop that is busy all the time cannot use a second
// CPU; on a machine it shares with its clients it also waits behind them
// for its CPU while the other CPU idles. So the tuner tries a further loop
// when every loop is busy and a CPU is idle, keeps it if the commands
// answered per second rise, and otherwise takes it back and waits longer
// before the next try.
const (
	tuneWindow    = 250 * time.Millisecond
	saturatedBusy = 0.9 // a loop busy this share of a window is saturated
	minIdleCPUs   = 0.2 // CPUs idle on average that a further loop could use
	minGain       = 1.1 // a further loop stays if commands/s rise this much
	shrinkBusy    = 0.5 // a loop goes when the others would be busy at most this
	// ... for this many windows in a row (30 s): a load that pauses for
	// less finds its loops when it comes back, rather than growing them
	// again, which takes about 0.8 s at the smaller count.
	shrinkWindows = 120
	growWindows   = 3 // loops saturated this many windows in a row get another
	minBackoff    = 2 * time.Second
	maxBackoff    = time.Minute
)

// tuner decides how many of a listener's event loops take connections. It
// is a pure function of the windows it is shown, so that tests can drive
// it.
type tuner struct {
	max, active int
	phase       tunePhase
	baseline    float64 // commands/s before the loop being tried
	lastRate    float64 // commands/s in the window before
	backoff     time.Duration
	nextTry     time.Time
	lowWindows  int
	fullWindows int // saturated windows in a row
}

type tunePhase uint8

const (
	tuneSteady   tunePhase = iota
	tuneSettling           // the window after a change mixes the loads before and after it
	tuneTrying             // the first window with the added loop
	tuneDeciding           // the second, which decides whether it stays
)

// tuneSample is what the loops did over one window.
type tuneSample struct {
	at       time.Time
	busy     []float64 // per active loop, the share of the window its thread ran or waited for a CPU
	rate     float64   // commands answered per second
	idleCPUs float64   // CPUs idle over the window, on average; negative: unknown
}

func newTuner(max int) *tuner {
	return &tuner{max: max, active: 1, backoff: minBackoff}
}

// step takes the window that ended and returns how many loops take
// connections from now on.
func (t *tuner) step(s tuneSample) int {
	switch t.phase {
	case tuneSettling:
		t.phase = tuneTrying
		return t.active
	case tuneTrying:
		t.phase, t.lastRate = tuneDeciding, s.rate
		return t.active
	case tuneDeciding:
		t.phase = tuneSteady
		if (t.lastRate+s.rate)/2 >= t.baseline*minGain {
			t.backoff = minBackoff
		} else {
			t.active--
			t.nextTry = s.at.Add(t.backoff)
			t.backoff = min(2*t.backoff, maxBackoff)
		}
		return t.active
	}
	saturated, total := true, 0.0
	for _, b := range s.busy {
		total += b
		saturated = saturated && b >= saturatedBusy
	}
	if t.active > 1 && total <= shrinkBusy*float64(t.active-1) {
		if t.lowWindows++; t.lowWindows >= shrinkWindows {
			t.active--
			t.lowWindows = 0
		}
		return t.active
	}
	t.lowWindows = 0
	if !saturated || s.idleCPUs >= 0 && s.idleCPUs < minIdleCPUs {
		t.fullWindows = 0
		return t.active
	}
	// The baseline is the rate of the last two full windows: the first
	// may include the load's ramp-up.
	if t.fullWindows++; t.fullWindows >= growWindows && t.active < t.max && !s.at.Before(t.nextTry) {
		t.baseline = (t.lastRate + s.rate) / 2
		t.active++
		t.phase = tuneSettling
		t.fullWindows = 0
	}
	t.lastRate = s.rate
	return t.active
}

// tune runs the tuner until the listener stops.
func (e *eventLoops) tune() {
	defer e.l.wg.Done()
	t := newTuner(len(e.loops))
	ticker := time.NewTicker(tuneWindow)
	defer ticker.Stop()
	prev := e.read(time.Now())
	for {
		select {
		case <-e.done:
			return
		case now := <-ticker.C:
			cur := e.read(now)
			active := t.step(cur.since(prev, t.active))
			prev = cur
			if active != int(e.active.Load()) {
				e.l.logger.Debug("event loops resized", zap.Int("from", int(e.active.Load())), zap.Int("to", active))
				e.resize(active)
			}
		}
	}
}

// loopsReading is what the tuner reads at the end of each window.
type loopsReading struct {
	at          time.Time
	busyNs      []int64 // per loop thread, time running or waiting for a CPU so far; -1: unknown
	commands    uint64
	idle, total uint64 // CPU time in /proc/stat's ticks; total 0: unknown
}

func (e *eventLoops) read(at time.Time) loopsReading {
	r := loopsReading{at: at, busyNs: make([]int64, len(e.loops)), commands: e.l.counters.commands.Load()}
	for i, lp := range e.loops {
		r.busyNs[i] = threadBusy(int(lp.tid.Load()))
	}
	r.idle, r.total = cpuTimes()
	return r
}

// since is the window from prev to r for the first active loops.
func (r loopsReading) since(prev loopsReading, active int) tuneSample {
	window := r.at.Sub(prev.at)
	s := tuneSample{at: r.at, busy: make([]float64, active), idleCPUs: -1}
	if window <= 0 {
		return s
	}
	for i := range s.busy {
		if r.busyNs[i] < 0 || prev.busyNs[i] < 0 {
			s.busy[i] = 0 // unknown: never grow
			continue
		}
		s.busy[i] = min(float64(r.busyNs[i]-prev.busyNs[i])/float64(window), 1)
	}
	s.rate = float64(r.commands-prev.commands) / window.Seconds()
	if r.total > prev.total && prev.total > 0 {
		s.idleCPUs = float64(r.idle-prev.idle) / float64(r.total-prev.total) * float64(runtime.NumCPU())
	}
	return s
}

// threadBusy returns the time a thread of this process has spent on a
// CPU or runnable and waiting for one, in ns, from its schedstat; -1 if it
// cannot be read. A loop that waits for a CPU is as saturated as one that
// runs: on a machine shared with its clients, the scheduler can queue the
// loop's thread behind a client's while the other CPU idles.
func threadBusy(tid int) int64 {
	if tid == 0 {
		return -1
	}
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/schedstat")
	if err != nil {
		return -1
	}
	fields := bytes.Fields(b)
	if len(fields) < 2 {
		return -1
	}
	run, err1 := strconv.ParseInt(string(fields[0]), 10, 64)
	wait, err2 := strconv.ParseInt(string(fields[1]), 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return run + wait
}

// cpuTimes returns the idle (with iowait) and total CPU time of the
// machine from /proc/stat, in ticks; 0, 0 if it cannot be read.
func cpuTimes() (idle, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 9 || string(fields[0]) != "cpu" {
		return 0, 0
	}
	// user nice system idle iowait irq softirq steal
	for i, f := range fields[1:9] {
		v, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, 0
		}
		total += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return idle, total
}

// resize makes loops[:k] take new connections and moves connections so
// that each of them serves about as many: the loops past k give all of
// theirs.
func (e *eventLoops) resize(k int) {
	e.setActive(int32(k))
	loads := make([]int32, len(e.loops))
	var total int32
	for i, lp := range e.loops {
		loads[i] = lp.load.Load()
		total += loads[i]
	}
	per := (total + int32(k) - 1) / int32(k)
	taker := 0
	for i, giver := range e.loops {
		keep := per
		if i >= k {
			keep = 0
		}
		var moves []*eventLoop
		for ; loads[i] > keep; loads[i]-- {
			for taker < k && loads[taker] >= per {
				taker++
			}
			if taker == k {
				break
			}
			moves = append(moves, e.loops[taker])
			loads[taker]++
		}
		if len(moves) > 0 {
			giver.mu.Lock()
			giver.moves = append(giver.moves, moves...)
			giver.mu.Unlock()
			giver.wake()
		}
	}
}
