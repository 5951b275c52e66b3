package logbuf

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is what the Writer writes to, read concurrently by the test.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLinesWholeAndFlushed(t *testing.T) {
	out := &lockedBuffer{}
	w := New(out, 20*time.Millisecond)
	var wg sync.WaitGroup
	const writers, lines = 8, 2000
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				// Lines of different lengths, some longer than the buffer.
				n := 10 + (g*lines+i)%300
				if i == 7 {
					n = 70 << 10
				}
				fmt.Fprintf(w, "%d-%d %s\n", g, i, strings.Repeat("x", n))
			}
		})
	}
	wg.Wait()
	// The timer flushes by itself.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(out.String(), "\n") < writers*lines {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d lines flushed within 5s of the last write", strings.Count(out.String(), "\n"), writers*lines)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var g, i int
		var xs string
		if _, err := fmt.Sscanf(line, "%d-%d %s", &g, &i, &xs); err != nil || strings.Trim(xs, "x") != "" {
			t.Fatalf("line %.60q... is not one whole write", line)
		}
	}
	out.mu.Lock()
	writes := out.writes
	out.mu.Unlock()
	if writes >= writers*lines/4 {
		t.Errorf("%d writes to the underlying writer for %d lines: not buffered", writes, writers*lines)
	}
	t.Logf("%d lines in %d writes", writers*lines, writes)
}

func TestCloseFlushesAndWritesThrough(t *testing.T) {
	out := &lockedBuffer{}
	w := New(out, time.Hour) // only Close can flush it
	fmt.Fprintln(w, "before close")
	if out.String() != "" {
		t.Fatalf("written through before a flush: %q", out.String())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "before close\n" {
		t.Fatalf("after Close: %q, want the buffered line", out.String())
	}
	fmt.Fprintln(w, "after close")
	if out.String() != "before close\nafter close\n" {
		t.Fatalf("a write after Close: %q, want it written through", out.String())
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
