package stream

import (
	"encoding/json"
	"sync"

	"github.com/webhook-relay/webhook-relay/internal/message"
)

// encoder encodes a message's data JSON once for all the streams that carry
// it, keeping the most recent ones: a broadcast to a thousand streams is
// marshalled once, not a thousand times.
type encoder struct {
	mu    sync.RWMutex
	byID  map[string][]byte
	order []string // ring of cached ids, oldest at next
	next  int
}

func newEncoder(size int) *encoder {
	return &encoder{byID: make(map[string][]byte, size), order: make([]string, size)}
}

// data returns the event data for m. The bytes are shared: callers copy them.
func (e *encoder) data(m message.Message) []byte {
	e.mu.RLock()
	b, ok := e.byID[m.ID]
	e.mu.RUnlock()
	if ok {
		return b
	}
	b = encode(m)
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.byID[m.ID]; !ok {
		if old := e.order[e.next]; old != "" {
			delete(e.byID, old)
		}
		e.order[e.next] = m.ID
		e.next = (e.next + 1) % len(e.order)
		e.byID[m.ID] = b
	}
	return b
}

func encode(m message.Message) []byte {
	var sid *string
	if m.SessionID != "" {
		sid = &m.SessionID
	}
	b, err := json.Marshal(webhookMessage{Type: "webhook_message", ID: m.ID, Message: m.Text, SessionID: sid, Timestamp: m.Timestamp})
	if err != nil { // a struct of strings and an int always marshals
		panic(err)
	}
	return b
}
