// Package dotenv reads .env files for the local adapter, as the seed guide's
// setup step expects (.env.local): KEY=value lines, # comments, optional
// "export ", single or double quotes. The real environment wins.
package dotenv

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"
)

var keyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Parse reads one file's assignments. A malformed line is an error naming
// the file and line.
func Parse(name, content string) (map[string]string, error) {
	vals := map[string]string{}
	// Windows editors start UTF-8 files with a byte-order mark; without
	// this the first key would not be a valid name.
	content = strings.TrimPrefix(content, "\ufeff")
	sc := bufio.NewScanner(strings.NewReader(content))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !keyRE.MatchString(key) {
			return nil, fmt.Errorf("%s:%d: want KEY=value", name, n)
		}
		val = strings.TrimSpace(val)
		switch {
		case len(val) >= 2 && (val[0] == '"' || val[0] == '\''):
			q := val[0]
			end := strings.IndexByte(val[1:], q)
			if end < 0 {
				return nil, fmt.Errorf("%s:%d: unterminated quote", name, n)
			}
			rest := strings.TrimSpace(val[end+2:])
			if rest != "" && !strings.HasPrefix(rest, "#") {
				return nil, fmt.Errorf("%s:%d: unexpected text after the quoted value", name, n)
			}
			val = val[1 : end+1]
			if q == '"' {
				val = strings.NewReplacer(`\n`, "\n", `\"`, `"`, `\\`, `\`).Replace(val)
			}
		case strings.HasPrefix(val, `"`) || strings.HasPrefix(val, "'"):
			return nil, fmt.Errorf("%s:%d: unterminated quote", name, n)
		default:
			if i := strings.Index(val, " #"); i >= 0 {
				val = strings.TrimSpace(val[:i])
			}
		}
		vals[key] = val
	}
	return vals, sc.Err()
}

// Getenv returns a lookup that prefers the real environment (lookup), then
// the files in order (earlier files win). Missing files are skipped.
func Getenv(lookup func(string) (string, bool), files ...string) (func(string) string, []string, error) {
	merged := map[string]string{}
	var loaded []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", f, err)
		}
		vals, err := Parse(f, string(b))
		if err != nil {
			return nil, nil, err
		}
		for k, v := range vals {
			if _, ok := merged[k]; !ok {
				merged[k] = v
			}
		}
		loaded = append(loaded, f)
	}
	return func(key string) string {
		if v, ok := lookup(key); ok {
			return v
		}
		return merged[key]
	}, loaded, nil
}
