package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/url"
	"unicode/utf8"

	"github.com/webhook-relay/webhook-relay/internal/message"
)

// payload is a decoded webhook body, before validation.
type payload struct {
	Message   string
	SessionID string // "" for broadcast
}

// bodyKind is what the Content-Type header says the body is.
type bodyKind int

const (
	kindUnsupported bodyKind = iota
	kindJSON
	kindForm
)

func kindOf(contentType string) bodyKind {
	if contentType == "" {
		return kindJSON
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return kindUnsupported
	}
	switch mt {
	case "application/json":
		return kindJSON
	case "application/x-www-form-urlencoded":
		return kindForm
	}
	return kindUnsupported
}

func bad(reason string) error { return &message.ValidationError{Reason: reason} }

// decodeJSON reads {"message": string, "sessionId"?: string|null}. It is
// stricter than encoding/json, which replaces invalid UTF-8, takes the last
// of duplicate keys and ignores nothing after a value in a Decoder: each of
// those would make what is stored differ from what the sender meant.
func decodeJSON(body []byte) (payload, error) {
	if !utf8.Valid(body) {
		return payload{}, bad("Request body must be valid UTF-8.")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return payload{}, bad("Request body is empty; send a JSON object with a 'message' field.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return payload{}, bad("Request body is not valid JSON.")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return payload{}, bad("Request body must be a JSON object with a 'message' field.")
	}
	var p payload
	seen := map[string]bool{}
	haveMessage := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return payload{}, bad("Request body is not valid JSON.")
		}
		key, _ := tok.(string)
		if seen[key] {
			return payload{}, bad("Duplicate field '" + key + "' in JSON body.")
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return payload{}, bad("Request body is not valid JSON.")
		}
		switch key {
		case "message":
			if string(raw) == "null" {
				continue
			}
			if err := json.Unmarshal(raw, &p.Message); err != nil {
				return payload{}, bad("Field 'message' must be a string.")
			}
			haveMessage = true
		case "sessionId":
			if string(raw) == "null" {
				continue // explicit broadcast
			}
			if err := json.Unmarshal(raw, &p.SessionID); err != nil {
				return payload{}, bad("Field 'sessionId' must be a string or null.")
			}
			if p.SessionID == "" {
				return payload{}, bad("Field 'sessionId' must not be empty; omit it or send null to broadcast.")
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return payload{}, bad("Request body is not valid JSON.")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return payload{}, bad("Unexpected data after the JSON object.")
	}
	if !haveMessage {
		return payload{}, bad("Field 'message' is required and must be a non-empty string.")
	}
	return p, nil
}

// decodeForm reads message and sessionId from a form body (Zapier's default
// payload type). An empty sessionId means broadcast: forms cannot send null.
func decodeForm(body []byte) (payload, error) {
	if !utf8.Valid(body) {
		return payload{}, bad("Request body must be valid UTF-8.")
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return payload{}, bad("Request body is not a valid form.")
	}
	for k, v := range vals {
		if (k == "message" || k == "sessionId") && len(v) > 1 {
			return payload{}, bad("Duplicate field '" + k + "' in form body.")
		}
	}
	msgs, ok := vals["message"]
	if !ok {
		return payload{}, bad("Field 'message' is required and must be a non-empty string.")
	}
	p := payload{Message: msgs[0], SessionID: vals.Get("sessionId")}
	if !utf8.ValidString(p.Message) || !utf8.ValidString(p.SessionID) {
		return payload{}, bad("Form fields must be valid UTF-8.")
	}
	return p, nil
}
