package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// InCI reports whether CI=true: `make test` installs every tool the tests
// use (infra/deps.sh), so there a missing one is a failure, not a skip.
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// Unavailable stops a test that needs something this machine lacks: it
// fails with CI=true and skips elsewhere, loudly (on stderr as well, where a
// skip in a long run would go unseen).
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI=true, not skipping: %s", msg)
	}
	fmt.Fprintf(os.Stderr, "\n!!! SKIPPING %s: %s (make deps installs what the tests need)\n\n", t.Name(), msg)
	t.Skipf("SKIPPING: %s (with CI=true this is a failure)", msg)
}

// LookPath returns the path of the command name, or stops the test as
// Unavailable. With probe, the command must also run with those arguments
// and succeed (a python3 that lacks a module, a node without fetch).
func LookPath(t testing.TB, name string, probe ...string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil && len(probe) > 0 {
		err = exec.Command(p, probe...).Run()
	}
	if err != nil {
		Unavailable(t, "%s is not available (%v)", strings.TrimSpace(name+" "+strings.Join(probe, " ")), err)
	}
	return p
}
