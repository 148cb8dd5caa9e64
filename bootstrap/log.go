package bootstrap

import (
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Uptime is the time since the kernel started (CLOCK_BOOTTIME), the clock
// the boot timeline and the log lines use.
func Uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Logger writes "[  1.234567] berth: message" lines, the kernel's style,
// so the console reads as one timeline.
type Logger struct {
	mu sync.Mutex
	w  io.Writer
	// now is replaceable in tests.
	now func() time.Duration
}

// NewLogger returns a Logger writing to w.
func NewLogger(w io.Writer) *Logger {
	return &Logger{w: w, now: Uptime}
}

// SetOutput changes where the lines go (the console, once /dev is there).
func (l *Logger) SetOutput(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w = w
}

// Printf logs one line.
func (l *Logger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return
	}
	fmt.Fprintf(l.w, "[%12.6f] berth: %s\n", l.now().Seconds(), fmt.Sprintf(format, args...))
}
