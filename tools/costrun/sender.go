package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// send posts the window's webhooks at the times of its plan, as a sender
// that knows nothing of the window would: visible, hidden or paused. It
// starts once the window has connected (a message sent before that would
// only be replayed) and never sends within the slack of the close.
func (w *window) send(ctx context.Context) {
	pg := w.pg
	last := pg.t0.Add(w.plan.Close() - pg.slack)
	wait := time.NewTimer(time.Until(last))
	defer wait.Stop()
	select {
	case <-w.connected:
	case <-wait.C:
		return
	case <-ctx.Done():
		return
	}
	for n, at := range w.plan.Sends {
		if !sleepUntil(ctx, pg.t0.Add(at)) {
			return
		}
		if time.Now().After(last) {
			return
		}
		id, err := pg.post(ctx, w.plan.Session, fmt.Sprintf("cost %s window %d message %d", pg.mode, w.plan.Index, n))
		w.mu.Lock()
		if err != nil {
			w.res.SendFailed++
		} else {
			w.res.Sent = append(w.res.Sent, id)
		}
		w.mu.Unlock()
	}
}

// post sends one webhook as a careful sender does: with an Idempotency-Key,
// retried with the same key on 429, 5xx or no answer. It returns the
// messageId of the 200.
func (pg *page) post(ctx context.Context, session, text string) (string, error) {
	var key [12]byte
	_, _ = rand.Read(key[:])
	body, _ := json.Marshal(map[string]string{"message": text, "sessionId": session})
	var lastErr error
	for attempt := 1; attempt <= 5; attempt++ {
		if attempt > 1 && !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			break
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodPost, pg.base+"/api/webhook", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", hex.EncodeToString(key[:]))
		req.Header.Set("X-Webhook-Secret", webhookSecret)
		resp, err := pg.posts.Do(req)
		if err != nil {
			cancel()
			lastErr = err
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel()
		if resp.StatusCode == http.StatusOK {
			var out struct {
				MessageID string `json:"messageId"`
			}
			if err := json.Unmarshal(b, &out); err != nil || out.MessageID == "" {
				return "", fmt.Errorf("POST /api/webhook: 200 without a messageId: %.200q", b)
			}
			return out.MessageID, nil
		}
		lastErr = fmt.Errorf("POST /api/webhook: %d %.200q", resp.StatusCode, b)
		if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
			break
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			sleepUntil(ctx, time.Now().Add(min(time.Duration(s)*time.Second, time.Second)))
		}
	}
	return "", lastErr
}
