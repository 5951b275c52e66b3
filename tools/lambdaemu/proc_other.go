//go:build !unix

package lambdaemu

import "os/exec"

func setProcAttr(*exec.Cmd) {}
