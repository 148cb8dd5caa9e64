package timesync

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Clock is what a Client moves. SystemClock is the kernel's; tests pass
// a recorder so that they never change the host's clock.
type Clock interface {
	// Step moves the clock by offset at once.
	Step(offset time.Duration) error
	// Slew makes the clock run a little fast or slow until it has moved
	// by offset.
	Slew(offset time.Duration) error
}

// SystemClock is the kernel's CLOCK_REALTIME. Changing it needs
// CAP_SYS_TIME.
type SystemClock struct{}

// Step adds offset to the clock with adjtimex(ADJ_SETOFFSET): the kernel
// adds it atomically, where clock_settime(now+offset) would lose the time
// between reading the clock and setting it. A slew still in progress is
// cancelled first, so it does not run on after the step.
func (SystemClock) Step(offset time.Duration) error {
	cancel := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT}
	if _, err := unix.Adjtimex(&cancel); err != nil {
		return fmt.Errorf("step clock by %v: cancel slew: %w", offset, err)
	}
	// With ADJ_NANO the Usec field holds nanoseconds, and it must be in
	// [0, 1s): a negative offset is -N s plus a positive remainder.
	sec, nsec := offset/time.Second, offset%time.Second
	if nsec < 0 {
		sec--
		nsec += time.Second
	}
	tx := unix.Timex{Modes: unix.ADJ_SETOFFSET | unix.ADJ_NANO, Time: unix.Timeval{Sec: int64(sec), Usec: int64(nsec)}}
	if _, err := unix.Adjtimex(&tx); err != nil {
		return fmt.Errorf("step clock by %v: %w", offset, err)
	}
	return nil
}

// Slew hands offset to the kernel with adjtimex(ADJ_OFFSET_SINGLESHOT),
// the adjtime(3) call: the clock runs up to 0.05% fast or slow (0.5 ms
// per second, so a 128 ms offset takes about 4 minutes) and time never
// goes backwards. A new call replaces what is left of the previous one,
// so each round corrects from a fresh measurement. It is chosen over the
// kernel PLL (ADJ_OFFSET with STA_PLL) because it has no state to tune;
// the price is that no frequency error is learned, and a drifting clock
// is pulled back at each poll instead.
func (SystemClock) Slew(offset time.Duration) error {
	tx := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT, Offset: offset.Microseconds()}
	if _, err := unix.Adjtimex(&tx); err != nil {
		return fmt.Errorf("slew clock by %v: %w", offset, err)
	}
	return nil
}
