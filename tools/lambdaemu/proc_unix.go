//go:build unix

package lambdaemu

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the function in a process group of its own, so that a
// Ctrl-C in the terminal reaches the emulator, which stops the function,
// rather than the function directly.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
