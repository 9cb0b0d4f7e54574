//go:build linux

package listeners

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// eventLoops serve the plain connections of a listener whose protocol is a
// FramedProtocol. Each loop is a goroutine that waits on its epoll set
// (level-triggered) and, for each readable connection, reads once, answers
// every whole command it read and writes the replies once: the system calls
// of memcached's and Redis's own loops, where a goroutine per connection
// adds a failed read per request and the scheduler's wakeups.
type eventLoops struct {
	l      *Listener
	loops  []*eventLoop
	active atomic.Int32  // loops[:active] take new connections
	done   chan struct{} // closed by stop

	mu      sync.Mutex // orders setActive and stop, for activeLoops
	stopped bool
}

// activeLoops counts the loops of all listeners that take connections.
var activeLoops atomic.Int32

// setActive makes loops[:k] the ones that take new connections.
func (e *eventLoops) setActive(k int32) {
	e.mu.Lock()
	if !e.stopped {
		activeLoops.Add(k - e.active.Load())
	}
	e.active.Store(k)
	e.mu.Unlock()
	e.l.counters.eventLoops.Store(k)
}

// eventLoop is one loop and the connections it serves.
type eventLoop struct {
	l      *Listener
	epfd   int
	wakefd int // an eventfd: other goroutines hand the loop work through mu
	events []unix.EpollEvent
	conns  map[int32]*loopConn // by fd; owned by the loop goroutine
	now    int64               // unix ns at the last wake
	idle   int64               // the listener's idle timeout in ns; 0: none
	procs  int32               // GOMAXPROCS when the loop started
	// quickWaits rises with each wait shorter than shortWait and falls
	// with each longer one: short waits are worth trying while it is
	// positive.
	quickWaits int

	load atomic.Int32 // connections the loop serves or is about to
	tid  atomic.Int32 // the thread the loop runs on

	mu       sync.Mutex
	closed   bool         // the loop has shut down: queue closes what it is given
	incoming []*loopConn  // accepted or moved here, to add to the epoll set
	requests []*loopConn  // to close (Close or stop from another goroutine)
	moves    []*eventLoop // a connection to move to each, when loops are resized
}

// errWouldBlock is a loop connection's read when the socket has nothing
// more: the loop goes on to other connections.
var errWouldBlock = errors.New("read would block")

// startEventLoops starts n loops, of which active take connections from
// the start; with active < n, a tuner adds and removes loops as the load
// calls for.
func startEventLoops(l *Listener, n, active int) (*eventLoops, error) {
	e := &eventLoops{l: l, done: make(chan struct{})}
	for range n {
		lp, err := newEventLoop(l)
		if err != nil {
			for _, lp := range e.loops {
				lp.closeFDs()
			}
			return nil, err
		}
		e.loops = append(e.loops, lp)
	}
	e.setActive(int32(active))
	for _, lp := range e.loops {
		l.wg.Add(1)
		go lp.run()
	}
	if active < n {
		l.wg.Add(1)
		go e.tune()
	}
	return e, nil
}

func newEventLoop(l *Listener) (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %v", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %v", err)
	}
	lp := &eventLoop{l: l, epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, 128), conns: make(map[int32]*loopConn),
		idle: int64(l.idle), procs: int32(runtime.GOMAXPROCS(0))}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}); err != nil {
		lp.closeFDs()
		return nil, fmt.Errorf("epoll_ctl: %v", err)
	}
	return lp, nil
}

func (lp *eventLoop) closeFDs() {
	unix.Close(lp.epfd)
	unix.Close(lp.wakefd)
}

// stop wakes every loop so that it sees the listener stopping.
func (e *eventLoops) stop() {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.stopped = true
	activeLoops.Add(-e.active.Load())
	e.mu.Unlock()
	close(e.done)
	for _, lp := range e.loops {
		lp.wake()
	}
}

// add gives an accepted connection to one of the loops, which then own it.
// It returns false, having changed nothing, when the loops do not take it
// (the listener is full or stopping, or the socket cannot be taken from the
// Go runtime): the caller serves or refuses it as it would without loops.
func (e *eventLoops) add(nc net.Conn) bool {
	l := e.l
	lc := &loopConn{local: nc.LocalAddr(), remote: nc.RemoteAddr(), counters: l.counters}
	lp := e.leastLoaded()
	lc.loop.Store(lp) // before Stop can see it
	if l.track(lc) != trackOK {
		return false
	}
	fd, err := detachFD(nc)
	if err != nil {
		l.untrack(lc)
		l.logger.Debug("cannot take the connection off the Go poller; serving it from a goroutine", zap.Error(err))
		return false
	}
	nc.Close() // the socket lives on in fd
	lc.fd = fd
	lc.s = l.newSession(lc)
	lc.fc = l.protocol.(FramedProtocol).NewFramedConn(lc.s)
	lp.queue(lc)
	return true
}

// leastLoaded returns the active loop with the fewest connections.
func (e *eventLoops) leastLoaded() *eventLoop {
	active := e.loops[:e.active.Load()]
	best := active[0]
	for _, lp := range active[1:] {
		if lp.load.Load() < best.load.Load() {
			best = lp
		}
	}
	return best
}

// queue gives the loop a connection to serve.
func (lp *eventLoop) queue(lc *loopConn) {
	lp.mu.Lock()
	if lp.closed {
		lp.mu.Unlock()
		lc.fc.Close()
		lp.l.endSession(lc.s, lc, fdCloser(lc.fd))
		return
	}
	lp.load.Add(1)
	lp.incoming = append(lp.incoming, lc)
	// Under mu, so that a close request finds the connection where it is
	// queued (see requestEnd).
	lc.loop.Store(lp)
	lp.mu.Unlock()
	lp.wake()
}

// detachFD returns a duplicate of the connection's socket that the Go
// runtime's poller does not watch, so that its readiness wakes only the
// loop; closing nc then leaves the socket open.
func detachFD(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("%T has no file descriptor", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := raw.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, cerr
	}
	return fd, err
}

// shortWait is how long a loop waits for events before it tells the Go
// scheduler that it blocks, when loops take every P and its waits are
// mostly shorter than that. A blocking system call lets the runtime's
// monitor take the loop's P away after 20 µs when no P is idle, and hand it
// back on return: with a loop per CPU under load, that churn cost about
// 0.5 µs of CPU per request and three times memcached's context switches.
// With a P to spare the monitor leaves a waiting loop's P alone; and a
// short wait that times out only adds a system call.
const shortWait = 50 * time.Microsecond

// quickWaitsMax bounds eventLoop.quickWaits both ways.
const quickWaitsMax = 8

// noShortWaits is set once epoll_pwait2 (Linux 5.11) turned out missing
// or forbidden.
var noShortWaits atomic.Bool

// wait waits for events, up to timeout ms (-1: no limit).
func (lp *eventLoop) wait(timeout int) (int, error) {
	if activeLoops.Load() < lp.procs || noShortWaits.Load() {
		return unix.EpollWait(lp.epfd, lp.events, timeout)
	}
	if lp.quickWaits > 0 {
		if n := lp.waitShort(); n > 0 {
			lp.quickWaits = min(lp.quickWaits+1, quickWaitsMax)
			return n, nil
		}
		// Two quick waits pay for the system call of one that timed out.
		lp.quickWaits -= 2
		return unix.EpollWait(lp.epfd, lp.events, timeout)
	}
	start := time.Now()
	n, err := unix.EpollWait(lp.epfd, lp.events, timeout)
	if time.Since(start) < shortWait {
		lp.quickWaits = min(lp.quickWaits+1, quickWaitsMax)
	} else {
		lp.quickWaits = max(lp.quickWaits-1, -quickWaitsMax)
	}
	return n, err
}

// waitShort waits up to shortWait for events while keeping the loop's P.
// It returns 0 when none came or it cannot wait so.
func (lp *eventLoop) waitShort() int {
	ts := unix.NsecToTimespec(int64(shortWait))
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT2, uintptr(lp.epfd), uintptr(unsafe.Pointer(&lp.events[0])),
		uintptr(len(lp.events)), uintptr(unsafe.Pointer(&ts)), 0, 0)
	switch errno {
	case 0:
		return int(n)
	case unix.ENOSYS, unix.EPERM:
		noShortWaits.Store(true)
	}
	return 0
}

func (lp *eventLoop) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(lp.wakefd, one[:])
}

func (lp *eventLoop) run() {
	// One thread per loop, as memcached's workers: the loop's goroutine
	// does not hop between threads after each blocking wait.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lp.tid.Store(int32(unix.Gettid()))
	defer lp.l.wg.Done()
	defer lp.shutdown()
	// The idle scan runs every idle/16, so a connection is closed between
	// idle_timeout and 17/16 of it.
	timeout, scanEvery := -1, int64(0)
	if lp.idle > 0 {
		scanEvery = min(max(lp.idle/16, int64(5*time.Millisecond)), int64(time.Second))
		timeout = int(scanEvery / int64(time.Millisecond))
	}
	lastScan := time.Now().UnixNano()
	for {
		n, err := lp.wait(timeout)
		if err != nil && err != unix.EINTR {
			lp.l.logger.Error("epoll_wait failed; closing the loop's connections", zap.Error(err))
			return
		}
		lp.now = time.Now().UnixNano()
		for i := range n {
			fd := lp.events[i].Fd
			if fd == int32(lp.wakefd) {
				lp.takeWork()
				continue
			}
			if lc := lp.conns[fd]; lc != nil {
				lp.readable(lc)
			}
		}
		if lp.l.stopping.Load() {
			return
		}
		if scanEvery > 0 && lp.now-lastScan >= scanEvery {
			lastScan = lp.now
			lp.closeIdle()
		}
	}
}

// takeWork adds the connections accepted for the loop or moved to it,
// closes those that other goroutines asked to close and moves connections
// to other loops as resize asked.
func (lp *eventLoop) takeWork() {
	var buf [8]byte
	_, _ = unix.Read(lp.wakefd, buf[:])
	lp.mu.Lock()
	incoming, requests, moves := lp.incoming, lp.requests, lp.moves
	lp.incoming, lp.requests, lp.moves = nil, nil, nil
	lp.mu.Unlock()
	for _, lc := range incoming {
		if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, lc.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lc.fd)}); err != nil {
			lp.l.logger.Error("epoll_ctl failed; closing the connection", zap.Error(err))
			lp.end(lc, err)
			continue
		}
		lc.lastActive = lp.now
		lp.conns[int32(lc.fd)] = lc
	}
	for _, lc := range requests {
		switch owner := lc.loop.Load(); {
		case lp.conns[int32(lc.fd)] == lc:
			lp.end(lc, nil)
		case owner != lp: // moved after the request was made
			owner.requestEnd(lc)
		}
	}
	for _, lc := range lp.conns {
		if len(moves) == 0 {
			break
		}
		lp.move(lc, moves[0])
		moves = moves[1:]
	}
}

// move gives a connection the loop serves to another loop. Its buffered
// input goes with it; it has no unwritten replies (a connection with
// some is handed off at the end of its batch).
func (lp *eventLoop) move(lc *loopConn, to *eventLoop) {
	_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, lc.fd, nil)
	lp.forget(lc)
	to.queue(lc)
}

// forget drops a connection the loop no longer serves.
func (lp *eventLoop) forget(lc *loopConn) {
	delete(lp.conns, int32(lc.fd))
	lp.load.Add(-1)
}

// readable reads what the client sent, answers every whole command and
// writes the replies.
func (lp *eventLoop) readable(lc *loopConn) {
	defer func() {
		if v := recover(); v != nil {
			lc.s.Logger.Error("panic serving a connection; closing it", zap.Any("panic", v), zap.StackSkip("stack", 2))
			lp.end(lc, nil)
		}
	}()
	r := lc.s.R
	if _, err := r.Peek(r.Buffered() + 1); err != nil && err != errWouldBlock && err != bufio.ErrBufferFull {
		lp.end(lc, err) // the client is gone; a command it did not finish is dropped
		return
	}
	lc.lastActive = lp.now
	for r.Buffered() > 0 {
		buf, _ := r.Peek(r.Buffered())
		n := lc.fc.FrameLength(buf)
		switch NextFrameStep(n, len(buf), r.Size()) {
		case FrameHandoff:
			lp.handoff(lc, nil)
			return
		case FrameWait: // the rest is on its way
			lp.flush(lc)
			return
		}
		err := lc.fc.ServeCommand()
		switch {
		case errors.Is(err, ErrServeBlocking):
			lp.handoff(lc, nil)
			return
		case errors.Is(err, errWouldBlock):
			lc.s.Logger.Error("bug: the protocol read past the command it measured; closing the connection",
				zap.Int("measured", n), zap.ByteString("command", buf[:min(n, 256)]))
			lp.end(lc, nil)
			return
		case err != nil:
			lp.flushAndEnd(lc, err)
			return
		case len(lc.pending) > 0:
			// The client does not take its replies as fast as it asks:
			// its own goroutine writes them, blocking.
			lp.handoff(lc, nil)
			return
		case lp.l.stopping.Load():
			lp.flushAndEnd(lc, nil)
			return
		}
	}
	lp.flush(lc)
}

// flush writes the replies to a batch of commands.
func (lp *eventLoop) flush(lc *loopConn) {
	lc.s.publishCounts()
	if err := lc.s.W.Flush(); err != nil {
		lp.end(lc, err)
		return
	}
	if len(lc.pending) > 0 {
		lp.handoff(lc, nil)
	}
}

// flushAndEnd writes the replies the connection has left and closes it;
// replies that do not fit in the socket at once go out from a goroutine.
func (lp *eventLoop) flushAndEnd(lc *loopConn, cause error) {
	if err := lc.s.W.Flush(); err != nil {
		lp.end(lc, err)
		return
	}
	if len(lc.pending) > 0 {
		lp.handoff(lc, cause)
		return
	}
	lp.end(lc, cause)
}

// closeIdle closes the connections that have sent nothing for the idle
// timeout.
func (lp *eventLoop) closeIdle() {
	for _, lc := range lp.conns {
		if lp.now-lc.lastActive >= lp.idle {
			lc.s.Logger.Debug("idle timeout; closing the connection")
			lp.end(lc, nil)
		}
	}
}

// end closes a connection the loop serves.
func (lp *eventLoop) end(lc *loopConn, cause error) {
	lp.forget(lc)
	lc.fc.Close()
	if cause != nil {
		logEnd(lc.s, cause)
	}
	lp.l.endSession(lc.s, lc, fdCloser(lc.fd))
}

// shutdown closes every connection of the loop, and the loop.
func (lp *eventLoop) shutdown() {
	for _, lc := range lp.conns {
		lp.flushAndEnd(lc, nil)
	}
	lp.mu.Lock()
	incoming := lp.incoming
	lp.incoming, lp.closed = nil, true
	lp.mu.Unlock()
	for _, lc := range incoming {
		lp.end(lc, nil)
	}
	lp.closeFDs()
}

// handoff moves a connection to a goroutine of its own, which writes the
// replies the socket did not take and then, unless cause ends the
// connection, goes on with FramedConn.Serve.
func (lp *eventLoop) handoff(lc *loopConn, cause error) {
	l := lp.l
	_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, lc.fd, nil)
	lp.forget(lc)
	f := os.NewFile(uintptr(lc.fd), "")
	nc, err := net.FileConn(f) // a duplicate, on the Go poller
	f.Close()
	if err != nil {
		lc.s.Logger.Error("cannot move the connection to a goroutine; closing it", zap.Error(err))
		lc.fc.Close()
		l.endSession(lc.s, lc, io.NopCloser(nil))
		return
	}
	c := &conn{Conn: nc, idle: l.idle, counters: l.counters}
	lc.blocking.Store(c)
	if lc.stopping.Load() || l.stopping.Load() {
		c.stop()
	}
	l.wg.Add(1)
	go l.serveHandedOff(lc, c, cause)
}

// serveHandedOff serves a connection that an event loop handed off.
func (l *Listener) serveHandedOff(lc *loopConn, c *conn, cause error) {
	defer l.wg.Done()
	s := lc.s
	defer l.endSession(s, lc, c)
	defer lc.fc.Close()
	err := cause
	if len(lc.pending) > 0 {
		_, werr := c.Write(lc.pending)
		lc.pending = nil
		if err == nil {
			err = werr
		}
	}
	// The replies the loop has not flushed go out before Serve waits for
	// the client's next command.
	if ferr := s.W.Flush(); err == nil {
		err = ferr
	}
	if err == nil {
		if err = lc.fc.Serve(); err == nil {
			err = s.W.Flush()
		}
	}
	logEnd(s, err)
}

// rawIO is read(2) or write(2) on a non-blocking socket, without telling
// the Go scheduler about a system call that cannot block: that saves the
// scheduler's bookkeeping on every request.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// fdCloser closes a file descriptor.
type fdCloser int

func (fd fdCloser) Close() error { return unix.Close(int(fd)) }

// loopConn is a connection that an event loop serves. It is the session's
// reader, writer and net.Conn: while the loop serves it, reads and writes
// go straight to the socket and never block; once it is handed off, they
// go through the blocking conn of the goroutine that serves it.
type loopConn struct {
	loop          atomic.Pointer[eventLoop] // the loop that serves it, or has it queued
	fd            int
	local, remote net.Addr
	counters      *counters
	s             *Session
	fc            FramedConn
	lastActive    int64  // unix ns; loop-owned
	pending       []byte // replies the socket did not take
	blocking      atomic.Pointer[conn]
	stopping      atomic.Bool
}

// Read reads what the socket has, or returns errWouldBlock.
func (lc *loopConn) Read(p []byte) (int, error) {
	if c := lc.blocking.Load(); c != nil {
		return c.Read(p)
	}
	for {
		n, err := rawIO(unix.SYS_READ, lc.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		lc.counters.bytesRead.Add(uint64(n))
		return n, nil
	}
}

// Write writes what the socket takes at once and keeps the rest in
// pending, which the loop sees after the command.
func (lc *loopConn) Write(p []byte) (int, error) {
	if c := lc.blocking.Load(); c != nil {
		return c.Write(p)
	}
	if len(lc.pending) > 0 {
		lc.pending = append(lc.pending, p...)
		return len(p), nil
	}
	written := 0
	for written < len(p) {
		n, err := rawIO(unix.SYS_WRITE, lc.fd, p[written:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			lc.pending = append(lc.pending, p[written:]...)
		case err != nil:
			lc.counters.bytesWritten.Add(uint64(written))
			return written, err
		default:
			written += n
			continue
		}
		break
	}
	lc.counters.bytesWritten.Add(uint64(written))
	return len(p), nil
}

// Close closes the connection: at once if a goroutine serves it, else the
// loop closes it after the batch it is answering.
func (lc *loopConn) Close() error {
	if c := lc.blocking.Load(); c != nil {
		return c.Close()
	}
	lc.loop.Load().requestEnd(lc)
	return nil
}

// requestEnd asks the loop to close a connection it serves or has queued.
// A loop that moved the connection passes the request on.
func (lp *eventLoop) requestEnd(lc *loopConn) {
	lp.mu.Lock()
	lp.requests = append(lp.requests, lc)
	lp.mu.Unlock()
	lp.wake()
}

// stop ends the connection once it has answered the command it is on.
func (lc *loopConn) stop() {
	lc.stopping.Store(true)
	if c := lc.blocking.Load(); c != nil {
		c.stop()
		return
	}
	lc.loop.Load().requestEnd(lc)
}

func (lc *loopConn) closeNow() {
	if c := lc.blocking.Load(); c != nil {
		c.closeNow()
	}
}

func (lc *loopConn) LocalAddr() net.Addr  { return lc.local }
func (lc *loopConn) RemoteAddr() net.Addr { return lc.remote }

// The deadlines apply once a goroutine serves the connection; the loop
// never blocks on it.
func (lc *loopConn) SetDeadline(t time.Time) error {
	if c := lc.blocking.Load(); c != nil {
		return c.SetDeadline(t)
	}
	return nil
}

func (lc *loopConn) SetReadDeadline(t time.Time) error {
	if c := lc.blocking.Load(); c != nil {
		return c.SetReadDeadline(t)
	}
	return nil
}

func (lc *loopConn) SetWriteDeadline(t time.Time) error {
	if c := lc.blocking.Load(); c != nil {
		return c.SetWriteDeadline(t)
	}
	return nil
}

// Interface guards
var (
	_ net.Conn = (*loopConn)(nil)
	_ tracked  = (*loopConn)(nil)
)
