// Package logbuf buffers a process's log lines: a write per request costs a
// system call, a buffer costs a copy. Lines are flushed on a short timer and
// when the buffer is closed, so a log stays whole and at most the interval
// late, and nothing is lost on a clean shutdown.
package logbuf

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// Writer is a buffered io.Writer, safe for concurrent use. Each Write is
// kept whole: slog writes a record with one Write, so lines never interleave
// or split across flushes.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	buf    *bufio.Writer
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// New returns a Writer that flushes to w every interval, and when its
// buffer (64 KiB) fills.
func New(w io.Writer, interval time.Duration) *Writer {
	b := &Writer{w: w, buf: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go b.flushEvery(interval)
	return b
}

func (b *Writer) flushEvery(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			_ = b.Flush()
		}
	}
}

// Write buffers p, or writes it through once the Writer is closed (a line
// logged during shutdown is never lost).
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	if len(p) > b.buf.Available() && b.buf.Buffered() > 0 {
		// Flush first, so that p goes out whole rather than split.
		if err := b.buf.Flush(); err != nil {
			return 0, err
		}
	}
	return b.buf.Write(p)
}

// Flush writes what is buffered.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Flush()
}

// Close flushes, stops the timer, and makes later writes go straight
// through. It does not close the underlying writer.
func (b *Writer) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	err := b.buf.Flush()
	b.mu.Unlock()
	close(b.stop)
	<-b.done
	return err
}
