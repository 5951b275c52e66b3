package sse

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct{ name, data string }{
		{"plain", `{"type":"webhook_message","message":"hi"}`},
		{"newlines", "line1\nline2\r\nline3\rline4"},
		{"looks like fields", "data: x\nid: 9\n\nevent: y"},
		{"emoji", "😀 ünïcode"},
		{"empty", ""},
		{"trailing newline", "x\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b []byte
			b = AppendRetry(b, 3000)
			b = AppendComment(b, "heartbeat")
			b = AppendEvent(b, "1.2.3", []byte(tt.data))
			r := NewReader(strings.NewReader(string(b)))
			ev, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(tt.data)
			if ev.Data != want || ev.ID != "1.2.3" || ev.Name != "" || r.Retry != 3000 {
				t.Fatalf("got %+v retry %d, want data %q", ev, r.Retry, want)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("want EOF, got %v", err)
			}
		})
	}
}

func TestComments(t *testing.T) {
	r := NewReader(strings.NewReader(": heartbeat\n\ndata: x\n\n"))
	r.KeepComment = true
	ev, err := r.Next()
	if err != nil || ev.Name != "comment" || ev.Data != "heartbeat" {
		t.Fatalf("got %+v, %v", ev, err)
	}
	ev, err = r.Next()
	if err != nil || ev.Data != "x" {
		t.Fatalf("got %+v, %v", ev, err)
	}
}

// FuzzEncode: any message, encoded as the relay encodes it (JSON in one data
// line), parses back unchanged.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"hi", "a\nb", "data: x\n\n", "\r\n\r", "😀", "\x00", "id: 1"} {
		f.Add(s, "1.2.3")
	}
	f.Fuzz(func(t *testing.T, msg, id string) {
		if strings.ContainsAny(id, "\r\n\x00") || !utf8.ValidString(msg) {
			return // ids are cursors; messages are validated UTF-8 before they get here
		}
		data, err := json.Marshal(map[string]string{"message": msg})
		if err != nil {
			t.Fatal(err)
		}
		r := NewReader(strings.NewReader(string(AppendEvent(nil, id, data))))
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("encoded event does not parse: %v", err)
		}
		var back map[string]string
		if err := json.Unmarshal([]byte(ev.Data), &back); err != nil {
			t.Fatalf("data %q is not the JSON sent: %v", ev.Data, err)
		}
		if back["message"] != msg {
			t.Fatalf("message %q came back as %q", msg, back["message"])
		}
		if strings.TrimLeft(id, " ") != "" && ev.ID != strings.TrimPrefix(id, " ") && ev.ID != id {
			t.Fatalf("id %q came back as %q", id, ev.ID)
		}
	})
}
