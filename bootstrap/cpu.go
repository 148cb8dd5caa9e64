package bootstrap

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPUTimes is what the machine's CPUs did since the kernel started,
// summed over every CPU (/proc/stat's first line).
type CPUTimes struct {
	CPUs int
	// Busy is user, nice, system, irq and softirq time; IOWait is idle
	// time with a disk read outstanding, counted apart from Idle.
	Busy, Idle, IOWait, Steal time.Duration
}

// String reads as "21.3 s busy, 4.1 s idle (0.2 s waiting on I/O) of 2
// CPUs".
func (c CPUTimes) String() string {
	s := fmt.Sprintf("%.1f s busy, %.1f s idle", c.Busy.Seconds(), c.Idle.Seconds())
	if c.IOWait > 0 {
		s += fmt.Sprintf(" (%.1f s waiting on I/O)", c.IOWait.Seconds())
	}
	if c.Steal > 0 {
		s += fmt.Sprintf(", %.1f s stolen", c.Steal.Seconds())
	}
	return s + fmt.Sprintf(" of %d CPUs", c.CPUs)
}

// ReadCPUTimes reads /proc/stat.
func ReadCPUTimes() (CPUTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return CPUTimes{}, fmt.Errorf("read cpu times: %w", err)
	}
	defer f.Close()
	return parseCPUTimes(f)
}

// userHZ is the unit of /proc/stat's times: USER_HZ, 100 on every Linux
// architecture Berth runs on.
const userHZ = 100

func parseCPUTimes(r io.Reader) (CPUTimes, error) {
	var c CPUTimes
	var total bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			c.CPUs++
			continue
		}
		// cpu user nice system idle iowait irq softirq steal ...
		if len(f) < 9 {
			return c, fmt.Errorf("read cpu times: %d fields in %q, want 8 or more", len(f)-1, sc.Text())
		}
		var v [8]time.Duration
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return c, fmt.Errorf("read cpu times: field %d: %w", i+1, err)
			}
			v[i] = time.Duration(n) * time.Second / userHZ
		}
		c.Busy = v[0] + v[1] + v[2] + v[5] + v[6]
		c.Idle, c.IOWait, c.Steal = v[3], v[4], v[7]
		total = true
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("read cpu times: %w", err)
	}
	if !total {
		return c, fmt.Errorf("read cpu times: no cpu line")
	}
	return c, nil
}
