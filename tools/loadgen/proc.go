package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is 100
// on every Linux the project targets.
const clockTicks = 100

// procSample is what /proc says about one process at one moment.
type procSample struct {
	OK       bool
	RSSBytes int64   // VmRSS
	Threads  int     // Threads
	CPUSec   float64 // utime + stime
}

// readProc samples /proc/PID. pid 0 means this process.
func readProc(pid int) procSample {
	dir := "/proc/self"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	var s procSample
	f, err := os.Open(dir + "/status")
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			fields := strings.Fields(line[len("VmRSS:"):])
			if len(fields) >= 1 {
				kb, _ := strconv.ParseInt(fields[0], 10, 64)
				s.RSSBytes = kb << 10
			}
		case strings.HasPrefix(line, "Threads:"):
			s.Threads, _ = strconv.Atoi(strings.TrimSpace(line[len("Threads:"):]))
		}
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s
	}
	// The command name is in parentheses and may hold spaces: fields count
	// from after the last ')'. utime and stime are fields 14 and 15.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) >= 13 {
		ut, _ := strconv.ParseInt(fields[11], 10, 64)
		st, _ := strconv.ParseInt(fields[12], 10, 64)
		s.CPUSec = float64(ut+st) / clockTicks
	}
	s.OK = s.RSSBytes > 0
	return s
}

// maxOpenFiles reads the soft "Max open files" limit of PID from
// /proc/PID/limits; 0 when unknown.
func maxOpenFiles(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			fields := strings.Fields(line[len("Max open files"):])
			if len(fields) > 0 {
				n, _ := strconv.Atoi(fields[0])
				return n
			}
		}
	}
	return 0
}

// raiseFileLimit lifts this process's soft RLIMIT_NOFILE to the hard limit
// (Go does so at start-up since 1.19 as well; this makes it explicit and
// reports it) and fails when need descriptors do not fit.
func raiseFileLimit(need int) (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if uint64(need) > lim.Cur {
		return int(lim.Cur), fmt.Errorf("need about %d file descriptors but RLIMIT_NOFILE is %d (hard %d): raise it (ulimit -n) or use fewer subscribers", need, lim.Cur, lim.Max)
	}
	return int(lim.Cur), nil
}

// serverProcess is a server the generator started as a child process (the
// floor, Centrifugo), so that its RSS and CPU are measured apart from the
// generator's, as the relay's are.
type serverProcess struct {
	URL    string
	PID    int
	cmd    *exec.Cmd
	dir    string        // removed after the process ends; "" for none
	exited chan struct{} // closed when the process has ended and been reaped
}

// newServerProcess watches cmd, which has been started.
func newServerProcess(cmd *exec.Cmd, dir string) *serverProcess {
	p := &serverProcess{PID: cmd.Process.Pid, cmd: cmd, dir: dir, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p
}

// Stop ends the process (by its pid), reaps it and removes its directory.
func (p *serverProcess) Stop() {
	if p == nil || p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}
