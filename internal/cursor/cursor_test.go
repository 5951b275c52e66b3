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
		{"1764392542123.4.7.0badf00d", Cursor{1764392542123, 4, 7, 0x0badf00d}, true},
		{"1.0.0.00000000", Cursor{1, 0, 0, 0}, true},
		{"0.18446744073709551615.0.ffffffff", Cursor{0, 18446744073709551615, 0, 0xffffffff}, true},
		{"", Cursor{}, false},
		{"garbage", Cursor{}, false},
		{"1.2.3", Cursor{}, false}, // the format before streams were tagged
		{"1.2.3.4", Cursor{}, false},
		{"1.2.3.0badf00d.5", Cursor{}, false},
		{"1.2.3.0BADF00D", Cursor{}, false},
		{"1.2.3.0badf00g", Cursor{}, false},
		{"1..3.00000000", Cursor{}, false},
		{"-1.2.3.00000000", Cursor{}, false},
		{"+1.2.3.00000000", Cursor{}, false},
		{" 1.2.3.00000000", Cursor{}, false},
		{"1.2.3.00000000 ", Cursor{}, false},
		{"1.18446744073709551616.0.00000000", Cursor{}, false},
		{"9223372036854775808.0.0.00000000", Cursor{}, false},
		{"1.0x1.2.00000000", Cursor{}, false},
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
	for _, s := range []string{"1.2.3.0badf00d", "1764392542123.0.15.ffffffff", "", "a.b.c.d", "1...", "99999999999999999999.1.1.00000000"} {
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

func TestTag(t *testing.T) {
	if Tag("a") == Tag("b") || Tag("a") == Tag("") {
		t.Fatalf("Tag does not tell sessions apart: a=%08x b=%08x broadcast=%08x", Tag("a"), Tag("b"), Tag(""))
	}
	if Tag("a") != Tag("a") {
		t.Fatal("Tag is not stable")
	}
}
