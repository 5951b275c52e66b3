package testutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// RepoRoot walks up from the working directory to the directory holding
// go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// CacheRoot is where tools are installed for the tests (DynamoDB Local,
// the Lambda RIE). infra/cache-root.sh decides it, for the scripts and for
// Go alike.
func CacheRoot() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out, err := exec.Command("bash", filepath.Join(root, "infra", "cache-root.sh")).Output()
	if err != nil {
		return "", errors.New("infra/cache-root.sh: " + err.Error())
	}
	return strings.TrimSpace(string(out)), nil
}
