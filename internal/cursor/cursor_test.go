package cursor

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Cursor
		ok   bool
	}{
		{"1764392542123.4.7", Cursor{1764392542123, 4, 7}, true},
		{"1.0.0", Cursor{1, 0, 0}, true},
		{"0.18446744073709551615.0", Cursor{0, 18446744073709551615, 0}, true},
		{"", Cursor{}, false},
		{"garbage", Cursor{}, false},
		{"1.2", Cursor{}, false},
		{"1.2.3.4", Cursor{}, false},
		{"1..3", Cursor{}, false},
		{"-1.2.3", Cursor{}, false},
		{"+1.2.3", Cursor{}, false},
		{" 1.2.3", Cursor{}, false},
		{"1.2.3 ", Cursor{}, false},
		{"1.18446744073709551616.0", Cursor{}, false},
		{"9223372036854775808.0.0", Cursor{}, false},
		{"1.0x1.2", Cursor{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.ok {
				if err != nil || got != tt.want {
					t.Fatalf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
				}
				if got.String() != tt.in {
					t.Fatalf("String() = %q, want %q", got.String(), tt.in)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) = %+v, %v; want ErrMalformed", tt.in, got, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1.2.3", "1764392542123.0.15", "", "a.b.c", "1..", "99999999999999999999.1.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			return
		}
		// Whatever parses must format back to itself modulo leading zeros,
		// and reparse to the same value.
		again, err := Parse(c.String())
		if err != nil || again != c {
			t.Fatalf("Parse(%q) = %+v, but its String %q reparses to %+v, %v", s, c, c.String(), again, err)
		}
	})
}
