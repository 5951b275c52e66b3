package testutil

import (
	"math"
	"strconv"
	"strings"
)

// RGB is an opaque colour, each channel 0-255.
type RGB struct{ R, G, B float64 }

// Hex reads "#rrggbb" (black when it is not that).
func Hex(s string) RGB {
	v, _ := strconv.ParseUint(strings.TrimPrefix(s, "#"), 16, 32)
	return RGB{float64(v >> 16 & 0xff), float64(v >> 8 & 0xff), float64(v & 0xff)}
}

// Contrast is the WCAG 2 contrast ratio of two opaque colours, from 1 to
// 21: at least 4.5 for body text (AA).
func Contrast(a, b RGB) float64 {
	la, lb := luminance(a), luminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// luminance is WCAG 2's relative luminance.
func luminance(c RGB) float64 {
	lin := func(v float64) float64 {
		v /= 255
		if v <= 0.03928 {
			return v / 12.92
		}
		return math.Pow((v+0.055)/1.055, 2.4)
	}
	return 0.2126*lin(c.R) + 0.7152*lin(c.G) + 0.0722*lin(c.B)
}
