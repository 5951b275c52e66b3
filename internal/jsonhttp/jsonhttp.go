// Package jsonhttp writes JSON responses. Every error the service answers,
// whatever the route or status, goes through Error, so a client always gets
// application/json with {"success":false,"error":"<sentence>"} — never the
// text/plain of http.Error or of the standard mux.
package jsonhttp

import (
	"encoding/json"
	"net/http"
)

// Write sends v as JSON with status.
func Write(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"success":false,"error":"Internal error."}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Success bool   `json:"success"`
	Error   string `json:"error"`
}

// Error sends {"success":false,"error":msg} with status.
func Error(w http.ResponseWriter, status int, msg string) {
	Write(w, status, ErrorBody{Success: false, Error: msg})
}

// NotFound answers a path the service does not serve.
func NotFound(w http.ResponseWriter) {
	Error(w, http.StatusNotFound, "Not found.")
}

// MethodNotAllowed answers 405 with the Allow header.
func MethodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	Error(w, http.StatusMethodNotAllowed, "Method not allowed; use "+allow+".")
}
