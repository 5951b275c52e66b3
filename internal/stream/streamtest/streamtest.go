// Package streamtest helps tests check that streams clean up after
// themselves.
package streamtest

import (
	"runtime"
	"strings"
)

// Goroutines counts the goroutines currently inside a stream handler or its
// follower: zero once every client has left.
func Goroutines() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "internal/stream.(*Handler)") || strings.Contains(g, "internal/tail.") {
			n++
		}
	}
	return n
}
