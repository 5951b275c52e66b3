// Package sse encodes and parses Server-Sent Events (the WHATWG
// event-stream format) as the relay uses them: unnamed events with an id and
// one line of data, comments for heartbeats.
package sse

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
)

// AppendEvent appends an event with the given id and data. Data containing
// line breaks is split over several data: lines, so it can never break the
// framing; the relay's data is one-line JSON and needs just one.
func AppendEvent(b []byte, id string, data []byte) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		b = append(b, "data: "...)
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	return append(b, '\n', '\n')
}

// AppendRetry appends a retry: field (reconnection delay in milliseconds).
func AppendRetry(b []byte, ms int) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, int64(ms), 10)
	return append(b, '\n', '\n')
}

// AppendComment appends a comment line, such as a heartbeat.
func AppendComment(b []byte, text string) []byte {
	b = append(b, ": "...)
	b = append(b, text...)
	return append(b, '\n', '\n')
}

// Event is a parsed event.
type Event struct {
	ID   string // the last event ID after this event
	Name string // "" for unnamed events (onmessage)
	Data string
}

// Reader parses an event stream as a browser does.
type Reader struct {
	sc          *bufio.Scanner
	lastID      string
	Retry       int      // last retry: value seen, 0 if none
	Comments    []string // comments seen since the last Next
	KeepComment bool     // record comments in Comments
}

// NewReader reads events from r.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	sc.Split(scanLines)
	return &Reader{sc: sc}
}

// Next returns the next dispatched event, or an error (io.EOF at the end).
// Comment-only blocks are not events; with KeepComment they are recorded and
// Next returns an Event with Name "comment" so callers can see heartbeats.
func (r *Reader) Next() (Event, error) {
	var data strings.Builder
	hasData := false
	name := ""
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if !hasData {
				name = ""
				continue
			}
			return Event{ID: r.lastID, Name: name, Data: data.String()}, nil
		}
		if strings.HasPrefix(line, ":") {
			if r.KeepComment {
				c := strings.TrimPrefix(strings.TrimPrefix(line, ":"), " ")
				r.Comments = append(r.Comments, c)
				return Event{ID: r.lastID, Name: "comment", Data: c}, nil
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				r.lastID = value
			}
		case "event":
			name = value
		case "retry":
			if n, err := strconv.Atoi(value); err == nil {
				r.Retry = n
			}
		}
	}
	if err := r.sc.Err(); err != nil {
		return Event{}, err
	}
	return Event{}, io.EOF
}

// LastEventID is the id a browser would send on reconnect.
func (r *Reader) LastEventID() string { return r.lastID }

// scanLines splits on \n, \r\n or \r, as the event-stream format does.
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	for i, c := range data {
		switch c {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // need more to know if \n follows
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
