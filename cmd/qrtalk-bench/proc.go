package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// A procSample is what /proc says of a process at one moment.
type procSample struct {
	CPU     float64 // user + system CPU seconds since it started
	RSS     int64   // resident set, bytes
	PeakRSS int64   // high-water mark of RSS (since start, or since resetPeak), bytes
}

// readProc reads the CPU time and memory of process pid.
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted from after its closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: bad utime or stime", pid)
	}
	s.CPU = float64(ut+st) / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			s.RSS = kbField(line)
		case strings.HasPrefix(line, "VmHWM:"):
			s.PeakRSS = kbField(line)
		}
	}
	return s, nil
}

func kbField(line string) int64 {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n << 10
}

// resetPeak resets the process's RSS high-water mark to its current RSS,
// so that the next reading is the peak of what follows.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// A meter measures one process over one measured run: CPU seconds used
// and peak RSS. A zero pid (a server that is not ours to watch) measures
// nothing.
type meter struct {
	pid      int
	start    procSample
	peakOK   bool
	t0       time.Time
	finished bool
	cpu      float64
	peak     int64
	rss      int64
	pg       *pgMeter // the PostgreSQL processes that work for the server, if any
}

func startMeter(pid int) *meter {
	m := &meter{pid: pid, t0: time.Now()}
	if pid == 0 {
		return m
	}
	m.peakOK = resetPeak(pid) == nil
	m.start, _ = readProc(pid)
	return m
}

// stop ends the measurement. It returns CPU seconds and peak RSS in bytes
// (0, 0 when there is nothing to watch).
func (m *meter) stop() (cpu float64, peak int64) {
	if m.finished || m.pid == 0 {
		return m.cpu, m.peak
	}
	m.finished = true
	end, err := readProc(m.pid)
	if err != nil {
		return 0, 0
	}
	m.cpu = end.CPU - m.start.CPU
	m.peak = end.PeakRSS
	m.rss = end.RSS
	return m.cpu, m.peak
}

// A Machine describes where a run happened.
type Machine struct {
	CPUs      int     `json:"cpus"`
	CPUModel  string  `json:"cpu_model"`
	MemoryGiB float64 `json:"memory_gib"`
	Kernel    string  `json:"kernel"`
	Go        string  `json:"go"`
	LoadAvg   string  `json:"load_average_at_start"`
	LoadEnd   string  `json:"load_average_at_end,omitempty"`
	OpenFiles string  `json:"open_files_limit"`
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				m.MemoryGiB = float64(kbField(line)) / (1 << 30)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.LoadAvg = loadAverage()
	if b, err := os.ReadFile("/proc/self/limits"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "Max open files") {
				f := strings.Fields(line)
				if len(f) >= 5 {
					m.OpenFiles = f[3]
				}
			}
		}
	}
	return m
}

// loadAverage is the machine's load average over 1, 5 and 15 minutes.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
