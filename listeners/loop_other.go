//go:build !linux

package listeners

import (
	"errors"
	"net"
)

// eventLoops are Linux only (epoll); elsewhere every connection has a
// goroutine of its own.
type eventLoops struct{}

func startEventLoops(*Listener, int, int) (*eventLoops, error) {
	return nil, errors.New("event loops need Linux")
}

func (*eventLoops) add(net.Conn) bool { return false }

func (*eventLoops) stop() {}
