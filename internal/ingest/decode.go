package ingest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

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

// bodyError is a request whose body cannot be read as sent: a status and
// the sentence for the sender.
type bodyError struct {
	status int
	msg    string
}

func (e *bodyError) Error() string { return e.msg }

// checkEncoding accepts an identity or gzip Content-Encoding, before
// anything is read; gzip reports whether the body must be decompressed.
func checkEncoding(h http.Header) (gzipped bool, _ *bodyError) {
	var codings []string
	for _, v := range h.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	switch {
	case len(codings) == 0:
		return false, nil
	case len(codings) == 1 && (codings[0] == "gzip" || codings[0] == "x-gzip"):
		return true, nil
	}
	return false, &bodyError{http.StatusUnsupportedMediaType,
		"Unsupported Content-Encoding '" + strings.Join(codings, ", ") + "'; send the body uncompressed or with Content-Encoding: gzip."}
}

// readBody reads the request body as sent, decompressing gzip. Both the
// bytes on the wire and the decoded bytes are bounded by limit: the decoder
// is read through a limit, so a small gzip bomb costs at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, gzipped bool) ([]byte, *bodyError) {
	tooLarge := &bodyError{http.StatusRequestEntityTooLarge, "Request body is larger than " + strconv.FormatInt(limit, 10) + " bytes."}
	if gzipped {
		tooLarge.msg = "Request body is larger than " + strconv.FormatInt(limit, 10) + " bytes (after gzip decoding)."
	}
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit)
	notGzip := &bodyError{http.StatusBadRequest, "Request body is not valid gzip data (Content-Encoding: gzip)."}
	if gzipped {
		zr, err := gzip.NewReader(src)
		if err != nil {
			if isMaxBytes(err) {
				return nil, tooLarge
			}
			return nil, notGzip
		}
		defer zr.Close()
		src = io.LimitReader(zr, limit+1)
	}
	body, err := io.ReadAll(src)
	switch {
	case isMaxBytes(err):
		return nil, tooLarge
	case err != nil && gzipped:
		return nil, notGzip
	case err != nil:
		return nil, &bodyError{http.StatusBadRequest, "Could not read the request body."}
	case int64(len(body)) > limit:
		return nil, tooLarge
	}
	return body, nil
}

func isMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// utf8BOM is what some editors and Windows tools put before UTF-8 text.
var utf8BOM = []byte("\xef\xbb\xbf")

// sniffKind drops a leading byte-order mark and reads a form-typed body
// that is a JSON object as JSON: `curl -d '{...}'` sends JSON as
// application/x-www-form-urlencoded, and no form a sender means starts
// with '{' (a form key with braces would be percent-encoded).
func sniffKind(kind bodyKind, body []byte) (bodyKind, []byte) {
	body = bytes.TrimPrefix(body, utf8BOM)
	if kind == kindForm && bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{")) {
		kind = kindJSON
	}
	return kind, body
}

func bad(reason string) error { return &message.ValidationError{Reason: reason} }

// badField is a rule broken by one field; reason reads after its name.
func badField(field, reason string) error {
	return &message.ValidationError{Field: field, Reason: reason}
}

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
	// jsontext (encoding/json/v2's tokenizer) rejects duplicate names,
	// at every depth, and reads tokens without reflection: a third of the
	// allocations of encoding/json's Decoder.Token for this body.
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	invalid := func(err error) (payload, error) {
		var syn *jsontext.SyntacticError
		if errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &syn) {
			return payload{}, bad("Duplicate field '" + syn.JSONPointer.LastToken() + "' in JSON body.")
		}
		return payload{}, bad("Request body is not valid JSON.")
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return invalid(err)
	}
	if tok.Kind() != '{' {
		return payload{}, bad("Request body must be a JSON object with a 'message' field.")
	}
	var p payload
	haveMessage := false
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return invalid(err)
		}
		switch name.String() {
		case "message":
			v, err := dec.ReadToken()
			switch {
			case err != nil:
				return invalid(err)
			case v.Kind() == 'n':
			case v.Kind() == '"':
				p.Message, haveMessage = v.String(), true
			default:
				return payload{}, badField("message", "must be a string.")
			}
		case "sessionId":
			// null and "" are a broadcast, as an empty form field and an
			// empty ?sessionId= on the stream are.
			v, err := dec.ReadToken()
			switch {
			case err != nil:
				return invalid(err)
			case v.Kind() == 'n':
			case v.Kind() == '"':
				p.SessionID = v.String()
			default:
				return payload{}, badField("sessionId", "must be a string or null.")
			}
		default:
			if err := dec.SkipValue(); err != nil {
				return invalid(err)
			}
		}
	}
	if _, err := dec.ReadToken(); err != nil { // the closing brace
		return invalid(err)
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return payload{}, bad("Unexpected data after the JSON object.")
	}
	if !haveMessage {
		return payload{}, badField("message", "is required and must be a non-empty string.")
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
		return payload{}, badField("message", "is required and must be a non-empty string.")
	}
	p := payload{Message: msgs[0], SessionID: vals.Get("sessionId")}
	if !utf8.ValidString(p.Message) || !utf8.ValidString(p.SessionID) {
		return payload{}, bad("Form fields must be valid UTF-8.")
	}
	return p, nil
}
