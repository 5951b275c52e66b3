package lambdaemu

import (
	"time"
)

// maxInvocations is how many Invocation records an Emulator keeps: the most
// recent ones.
const maxInvocations = 100_000

// Invocation is the account of one invocation that reached the function,
// kept once it is over: what Lambda's REPORT line and bill would say of it.
type Invocation struct {
	RequestID string `json:"requestId"`
	// Start is when the function got the invocation: its GET
	// .../invocation/next returned.
	Start time.Time `json:"start"`
	// End is the function's last byte of response: the end of the body of
	// its POST .../response (streamed or not), or its POST .../error. For an
	// invocation that did not end so, it is when the emulator stopped it: at
	// its timeout, when its process exited, or at Close.
	End time.Time `json:"end"`
	// Duration is End minus Start.
	Duration time.Duration `json:"duration"`
	// Billed is Duration rounded up to the next whole millisecond, and at
	// least 1ms, as Lambda bills an invocation's duration.
	Billed time.Duration `json:"billed"`
	// Init is the init phase of the process the invocation started (process
	// start to its first GET .../next) for the first invocation of a
	// process, a cold start; 0 otherwise. Lambda bills it too; Billed leaves
	// it out.
	Init time.Duration `json:"init,omitempty"`
	// ClientGone tells whether the caller left before End (the HTTP client
	// disconnected, its context ended, or it closed the body early), and
	// ClientGoneAt when. From then on the function ran for nobody.
	ClientGone   bool      `json:"clientGone"`
	ClientGoneAt time.Time `json:"clientGoneAt,omitzero"`
	// Bytes counts the response body the runtime posted (for a function URL
	// stream, its prelude included); Dropped how much of it was discarded
	// because the caller had left.
	Bytes   int64 `json:"bytes"`
	Dropped int64 `json:"dropped"`
	// Error is why the invocation failed, empty if the function completed its
	// response: the function's error, a timeout, an exit, Close.
	Error string `json:"error,omitempty"`
}

// billedDuration is d as Lambda bills it: rounded up to the next whole
// millisecond, 1ms at least.
func billedDuration(d time.Duration) time.Duration {
	if d <= time.Millisecond {
		return time.Millisecond
	}
	return (d + time.Millisecond - 1) / time.Millisecond * time.Millisecond
}

// Invocations returns the records of the invocations that reached the
// function and are over (the last 100,000), in the order they ended.
func (e *Emulator) Invocations() []Invocation {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Invocation(nil), e.records...)
}

// report records the end of inv at end; err is why it failed, nil if the
// function completed its response. Only the first report of an invocation
// counts, and only for an invocation the function got.
func (e *Emulator) report(inv *invocation, end time.Time, err error) {
	inv.mu.Lock()
	if inv.reported || inv.start.IsZero() {
		inv.reported = true
		inv.mu.Unlock()
		inv.unwatch()
		return
	}
	inv.reported = true
	rec := Invocation{
		RequestID:    inv.id,
		Start:        inv.start,
		End:          end,
		Duration:     end.Sub(inv.start),
		Init:         inv.init,
		ClientGone:   !inv.goneAt.IsZero(),
		ClientGoneAt: inv.goneAt,
		Bytes:        inv.bytes,
		Dropped:      inv.dropped,
	}
	inv.mu.Unlock()
	inv.unwatch()
	rec.Billed = billedDuration(rec.Duration)
	if err != nil {
		rec.Error = err.Error()
	}

	e.mu.Lock()
	if len(e.records) >= maxInvocations {
		n := copy(e.records, e.records[len(e.records)-maxInvocations+1:])
		e.records = e.records[:n]
	}
	e.records = append(e.records, rec)
	e.mu.Unlock()

	args := []any{
		"requestId", rec.RequestID,
		"durationMs", float64(rec.Duration.Microseconds()) / 1000,
		"billedMs", rec.Billed.Milliseconds(),
		"clientGone", rec.ClientGone,
		"bytes", rec.Bytes,
		"droppedBytes", rec.Dropped,
	}
	if rec.Init > 0 {
		args = append(args, "initMs", float64(rec.Init.Microseconds())/1000)
	}
	if rec.ClientGone {
		args = append(args, "clientGoneAfterMs", float64(rec.ClientGoneAt.Sub(rec.Start).Microseconds())/1000)
	}
	if rec.Error != "" {
		args = append(args, "err", rec.Error)
	}
	e.log.Info("report", args...)
}
