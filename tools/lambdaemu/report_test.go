package lambdaemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

// tryEchoPID invokes streamfn's /echo and returns the pid of the process
// that served it.
func tryEchoPID(ctx context.Context, e *Emulator) (int, error) {
	resp, err := e.InvokeStream(ctx, []byte(`{"version":"2.0","rawPath":"/echo","requestContext":{"http":{"method":"GET","path":"/echo"}}}`))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var ec struct {
		PID int `json:"pid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ec); err != nil {
		return 0, err
	}
	return ec.PID, nil
}

func echoPID(t *testing.T, e *Emulator) int {
	t.Helper()
	pid, err := tryEchoPID(t.Context(), e)
	if err != nil {
		t.Fatalf("/echo: %v", err)
	}
	return pid
}

func findRecord(e *Emulator, id string) (Invocation, bool) {
	for _, r := range e.Invocations() {
		if r.RequestID == id {
			return r, true
		}
	}
	return Invocation{}, false
}

// waitRecord waits up to d for the record of invocation id.
func waitRecord(t *testing.T, e *Emulator, id string, d time.Duration) Invocation {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if r, ok := findRecord(e, id); ok {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of invocation %s within %v; records: %+v", id, d, e.Invocations())
		}
	}
}

// tickReport is what streamfn's /ticks tells $REPORT_URL at its end.
type tickReport struct {
	url.Values
	at time.Time
}

// newReporter serves $REPORT_URL for streamfn's /ticks.
func newReporter(t *testing.T) (string, <-chan tickReport) {
	ch := make(chan tickReport, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case ch <- tickReport{r.URL.Query(), time.Now()}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

func withReporter(u string) func(*Function) {
	return func(fn *Function) { fn.Env = append(fn.Env, "REPORT_URL="+u) }
}

func TestBilledDuration(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		d, want time.Duration
	}{
		{0, ms}, // Lambda's minimum
		{time.Nanosecond, ms},
		{ms, ms},
		{1200 * time.Microsecond, 2 * ms},
		{2 * ms, 2 * ms},
		{2*ms + time.Nanosecond, 3 * ms},
		{999*ms + 100*time.Microsecond, 1000 * ms},
		{5 * time.Second, 5 * time.Second},
		{5*time.Second + 400*time.Microsecond, 5*time.Second + ms},
	}
	for _, tt := range tests {
		if got := billedDuration(tt.d); got != tt.want {
			t.Errorf("billedDuration(%v) = %v, want %v", tt.d, got, tt.want)
		}
	}
}

// TestClientLeavesMidStream: however the client of a stream goes away, the
// function is told nothing, as on AWS. Its writes succeed, its context
// lives on, it runs to its planned end, holding its process meanwhile, and
// the whole time is billed; what it wrote after the client left is dropped.
func TestClientLeavesMidStream(t *testing.T) {
	const (
		n       = 8
		every   = 100 * time.Millisecond
		planned = (n - 1) * every // from the first tick to the last
		path    = "/ticks?n=8&every=100ms"
		// What it writes after the first tick: "tick 1\n" to "tick 7\n", "done\n".
		rest = int64(7*len("tick 1\n") + len("done\n"))
	)
	type opened struct {
		body  io.Reader
		leave func()
		// wantErr is what a Read returns once the client has left (nil: not checked).
		wantErr error
	}
	tests := []struct {
		name string
		open func(t *testing.T, e *Emulator) opened
	}{
		{"function URL client disconnects", func(t *testing.T, e *Emulator) opened {
			srv := serve(t, e.FunctionURLHandler())
			ctx, cancel := context.WithCancel(t.Context())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return opened{resp.Body, func() { cancel(); resp.Body.Close() }, nil}
		}},
		{"InvokeStream body closed", func(t *testing.T, e *Emulator) opened {
			resp, err := e.InvokeStream(t.Context(), urlEvent(t, "GET", path))
			if err != nil {
				t.Fatal(err)
			}
			return opened{resp.Body, func() { resp.Body.Close() }, ErrAbandoned}
		}},
		{"InvokeStream context cancelled", func(t *testing.T, e *Emulator) opened {
			ctx, cancel := context.WithCancel(t.Context())
			resp, err := e.InvokeStream(ctx, urlEvent(t, "GET", path))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			return opened{resp.Body, cancel, context.Canceled}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reportURL, reports := newReporter(t)
			e := start(t, "streamfn", withReporter(reportURL)) // one process
			pid := echoPID(t, e)

			begin := time.Now()
			o := tt.open(t, e)
			if s, err := readWithin(t, o.body, 5*time.Second, "first tick"); !strings.HasPrefix(s, "tick 0\n") || err != nil {
				t.Fatalf("first read = %q, %v; want tick 0", s, err)
			}
			o.leave()
			if o.wantErr != nil {
				if _, err := readWithin(t, o.body, 5*time.Second, "read after leaving"); !errors.Is(err, o.wantErr) {
					t.Errorf("Read after the client left = %v, want %v", err, o.wantErr)
				}
			}

			// The process is busy with the orphaned invocation: the next one
			// runs once it is over, in the same (warm) process.
			if got := echoPID(t, e); got != pid {
				t.Errorf("pid %d after the client left, was %d: the function's process was stopped", got, pid)
			}
			echoed := time.Now()
			var rp tickReport
			select {
			case rp = <-reports:
			default:
				t.Fatal("the next invocation was served before the function that lost its client had ended")
			}
			if rp.Get("ticks") != fmt.Sprint(n) || rp.Get("writeErrors") != "0" || rp.Get("ctxErr") != "<nil>" {
				t.Errorf("the function noticed the client leaving: report %v, want %d ticks, 0 write errors, no context error", rp.Values, n)
			}
			if d := rp.at.Sub(begin); d < planned {
				t.Errorf("the function ended %v after the invocation began, before its planned %v", d, planned)
			}

			rec := waitRecord(t, e, rp.Get("id"), 5*time.Second)
			t.Logf("record %+v", rec)
			if !rec.ClientGone || !rec.ClientGoneAt.After(rec.Start) || !rec.ClientGoneAt.Before(rec.End) {
				t.Errorf("ClientGone %v at %v, want true, between Start %v and End %v", rec.ClientGone, rec.ClientGoneAt, rec.Start, rec.End)
			}
			if gone := rec.ClientGoneAt.Sub(rec.Start); gone > planned/2 {
				t.Errorf("the client left %v into the invocation, want right after the first tick", gone)
			}
			if rec.Duration < planned || rec.Duration != rec.End.Sub(rec.Start) || rec.End.After(echoed) {
				t.Errorf("Duration %v (End %v), want at least the planned %v, ending before the next invocation", rec.Duration, rec.End, planned)
			}
			if rec.Billed < rec.Duration || rec.Billed-rec.Duration >= time.Millisecond || rec.Billed%time.Millisecond != 0 {
				t.Errorf("Billed %v for Duration %v, want it rounded up to the millisecond", rec.Billed, rec.Duration)
			}
			if rec.Dropped <= 0 || rec.Dropped > rest || rec.Bytes <= rec.Dropped {
				t.Errorf("Bytes %d, Dropped %d: want the writes after the first tick (at most %d bytes) dropped", rec.Bytes, rec.Dropped, rest)
			}
			if rec.Error != "" {
				t.Errorf("Error %q, want none", rec.Error)
			}
		})
	}
}

// TestClientGoneThenTimeout: a function that lost its client and does not
// end by itself runs on to its timeout, is then killed as on Lambda, and is
// billed its whole timeout.
func TestClientGoneThenTimeout(t *testing.T) {
	const timeout = 600 * time.Millisecond
	e := start(t, "streamfn", func(fn *Function) { fn.Timeout = timeout })
	pid := echoPID(t, e)
	resp, err := e.InvokeStream(t.Context(), urlEvent(t, "GET", "/ticks?n=1000&every=50ms"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := readWithin(t, resp.Body, 5*time.Second, "first tick"); !strings.HasPrefix(s, "tick 0\n") || err != nil {
		t.Fatalf("first read = %q, %v", s, err)
	}
	resp.Body.Close()
	if _, ok := findRecord(e, resp.RequestID); ok {
		t.Fatal("the invocation ended when its client left")
	}
	rec := waitRecord(t, e, resp.RequestID, 10*time.Second)
	t.Logf("record %+v", rec)
	if !strings.Contains(rec.Error, "timed out") || !rec.ClientGone || rec.Dropped <= 0 {
		t.Errorf("record %+v, want a timeout, the client gone, output dropped", rec)
	}
	if rec.Billed < timeout-10*time.Millisecond || rec.Billed > timeout+time.Second {
		t.Errorf("Billed %v, want about the %v timeout", rec.Billed, timeout)
	}
	if got := echoPID(t, e); got == pid {
		t.Errorf("still pid %d after the timeout", got)
	}
}

// TestBilledDurationOfWholeInvocations: a record is there once the caller
// has the whole response, bills about the wall time of the invocation, the
// first invocation of a process carries its init, and each has its log line.
func TestBilledDurationOfWholeInvocations(t *testing.T) {
	tests := []struct {
		name   string
		fn     string
		invoke func(t *testing.T, e *Emulator) error
		// min is how long the function itself takes, at least.
		min     time.Duration
		wantErr string
	}{
		{"streamed", "streamfn", func(t *testing.T, e *Emulator) error {
			resp, err := e.InvokeStream(t.Context(), urlEvent(t, "GET", "/ticks?n=4&every=100ms"))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil && !strings.HasSuffix(string(b), "tick 3\ndone\n") {
				err = fmt.Errorf("body %q", b)
			}
			return err
		}, 300 * time.Millisecond, ""},
		{"buffered", "bufferedfn", func(t *testing.T, e *Emulator) error {
			_, err := e.Invoke(t.Context(), v2Event(t, "GET", "/echo"))
			return err
		}, 0, ""},
		{"function error", "bufferedfn", func(t *testing.T, e *Emulator) error {
			_, err := e.Invoke(t.Context(), v2Event(t, "GET", "/error"))
			var fe *FunctionError
			if !errors.As(err, &fe) {
				return fmt.Errorf("want a *FunctionError, got %v", err)
			}
			return nil
		}, 0, "handler failed on purpose"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := new(testutil.Buffer)
			e := start(t, tt.fn, func(fn *Function) { fn.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
			var walls []time.Duration
			for i := range 2 {
				begin := time.Now()
				if err := tt.invoke(t, e); err != nil {
					t.Fatalf("invocation %d: %v", i, err)
				}
				walls = append(walls, time.Since(begin))
				if n := len(e.Invocations()); n != i+1 {
					t.Fatalf("%d records once invocation %d returned, want %d", n, i, i+1)
				}
			}
			recs := e.Invocations()
			for i, rec := range recs {
				wall := walls[i]
				t.Logf("invocation %d: wall %v, record %+v", i, wall, rec)
				if rec.Duration < tt.min || rec.Duration > wall || wall-rec.Duration > 250*time.Millisecond {
					t.Errorf("invocation %d: Duration %v, want at least %v, at most and about its wall time %v", i, rec.Duration, tt.min, wall)
				}
				if rec.Billed != billedDuration(rec.Duration) || rec.Billed > billedDuration(wall) {
					t.Errorf("invocation %d: Billed %v for Duration %v, wall %v", i, rec.Billed, rec.Duration, wall)
				}
				if rec.ClientGone || !rec.ClientGoneAt.IsZero() || rec.Dropped != 0 {
					t.Errorf("invocation %d: ClientGone %v at %v, Dropped %d; want none", i, rec.ClientGone, rec.ClientGoneAt, rec.Dropped)
				}
				if (tt.wantErr == "") != (rec.Error == "") || !strings.Contains(rec.Error, tt.wantErr) {
					t.Errorf("invocation %d: Error %q, want %q", i, rec.Error, tt.wantErr)
				}
				if tt.wantErr == "" && rec.Bytes <= 0 {
					t.Errorf("invocation %d: Bytes %d", i, rec.Bytes)
				}
				if want := []time.Duration{e.InitDuration(), 0}[i]; rec.Init != want {
					t.Errorf("invocation %d: Init %v, want %v", i, rec.Init, want)
				}
				if got, ok := billedMsLogged(t, logs.String(), rec.RequestID); !ok || got != rec.Billed.Milliseconds() {
					t.Errorf("invocation %d: logged billedMs %d (found %v), want %d; log:\n%s", i, got, ok, rec.Billed.Milliseconds(), logs)
				}
			}
		})
	}
}

// billedMsLogged finds the report line of invocation id in the JSON log.
func billedMsLogged(t *testing.T, log, id string) (int64, bool) {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var line struct {
			Msg       string `json:"msg"`
			RequestID string `json:"requestId"`
			BilledMs  *int64 `json:"billedMs"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "report" && line.RequestID == id && line.BilledMs != nil {
			return *line.BilledMs, true
		}
	}
	return 0, false
}
