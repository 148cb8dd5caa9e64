package bootstrap

import (
	"strings"
	"testing"
	"time"
)

func TestParseCPUTimes(t *testing.T) {
	// A 2-CPU guest 13 s into its boot, as the kernel writes it.
	stat := `cpu  812 3 1017 674 21 0 38 0 0 0
cpu0 402 1 530 330 10 0 20 0 0 0
cpu1 410 2 487 344 11 0 18 0 0 0
intr 123456 0 9 0
ctxt 98765
btime 1796420000
`
	c, err := parseCPUTimes(strings.NewReader(stat))
	if err != nil {
		t.Fatal(err)
	}
	want := CPUTimes{CPUs: 2, Busy: 18700 * time.Millisecond, Idle: 6740 * time.Millisecond, IOWait: 210 * time.Millisecond}
	if c != want {
		t.Errorf("parseCPUTimes = %+v, want %+v", c, want)
	}
	if got, want := c.String(), "18.7 s busy, 6.7 s idle (0.2 s waiting on I/O) of 2 CPUs"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	// The machine's own /proc/stat parses and has at least one CPU.
	if c, err := ReadCPUTimes(); err != nil || c.CPUs < 1 || c.Busy <= 0 {
		t.Errorf("ReadCPUTimes() = %+v, %v; want the CPUs of this machine with some busy time", c, err)
	}
}

func TestParseCPUTimesBroken(t *testing.T) {
	for _, in := range []string{"", "intr 1 2\n", "cpu  1 2 3\n", "cpu  1 2 x 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\n"} {
		if c, err := parseCPUTimes(strings.NewReader(in)); err == nil {
			t.Errorf("parseCPUTimes(%q) = %+v, want an error", in, c)
		}
	}
}
