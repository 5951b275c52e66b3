package stream

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/jsonhttp"
	"github.com/webhook-relay/webhook-relay/internal/store"
)

// ClosePath ends one stream: POST ClosePath?connectionId=<id>, what a page
// sends with navigator.sendBeacon when it is closed or hidden. On Lambda a
// stream's invocation is never told that its client left, so without it a
// closed tab is billed, and counted as a listener, until the planned end.
//
// The connection id is the credential: it is random, and only the stream's
// own client was told it (in the connected event). Any well-formed id gets
// 204, whether it names an open stream or not, so that nothing leaks.
const ClosePath = Path + "/close"

// closeWait bounds how long a close request waits for a stream of this
// instance to release its lease, so that the 204 means "gone" locally.
const closeWait = 2 * time.Second

func (h *Handler) serveClose(w http.ResponseWriter, r *http.Request) {
	allowed := h.cors(w, r)
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		preflight(w, allowed, "POST, OPTIONS", "")
		return
	default:
		jsonhttp.MethodNotAllowed(w, "POST, OPTIONS")
		return
	}
	// The body is ignored (a beacon may carry one) and never read.
	id := r.URL.Query().Get("connectionId")
	if !store.ValidConnectionID(id) {
		jsonhttp.Error(w, http.StatusBadRequest, "Query parameter 'connectionId' must be the connectionId of a connected event: 24 lowercase hexadecimal characters.")
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	where := "this instance"
	if !h.closeLocal(ctx, id) {
		found, err := h.closeRemote(ctx, id)
		if err != nil {
			h.log.LogAttrs(ctx, slog.LevelWarn, "stream close failed: store unavailable", slog.String("connectionId", id), slog.String("error", err.Error()))
			w.Header().Set("Retry-After", "1")
			jsonhttp.Error(w, http.StatusServiceUnavailable, "The message store cannot be reached; the stream was not closed. Retry, or let it end on its own.")
			return
		}
		where = "signalled"
		if !found {
			where = "no open stream"
		}
	}
	h.log.LogAttrs(ctx, slog.LevelInfo, "stream close requested", slog.String("connectionId", id), slog.String("found", where))
	w.WriteHeader(http.StatusNoContent)
}

// closeLocal ends the stream id if this instance serves it, and waits
// (briefly) until it has released its lease.
func (h *Handler) closeLocal(ctx context.Context, id string) bool {
	h.mu.Lock()
	ls := h.live[id]
	h.mu.Unlock()
	if ls == nil {
		return false
	}
	ls.closed.Store(true)
	ls.cancel()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-ls.done:
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

// closeRemote ends a stream of another instance: it appends a close signal
// to the partition the stream reads anyway (its session's, or broadcast),
// so the stream notices it in its next poll without a read of its own, and
// removes the lease at once so that presence drops now. An unknown or
// finished id has no lease: nothing to do.
func (h *Handler) closeRemote(ctx context.Context, id string) (found bool, err error) {
	lease, ok, err := h.st.LeaseOf(ctx, id)
	if err != nil || !ok {
		return false, err
	}
	if err := h.st.AppendClose(ctx, store.Partition(lease.SessionID), id); err != nil {
		return true, err
	}
	// The stream renews its lease until it notices the signal, and then
	// deletes it again; this delete only makes presence drop sooner.
	if err := h.st.DeleteLease(ctx, lease); err != nil {
		h.log.LogAttrs(ctx, slog.LevelWarn, "lease release after close failed; the stream releases it", slog.String("connectionId", id), slog.String("error", err.Error()))
	}
	return true, nil
}
