package configdrive

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// attachLoop attaches img read-only to a free loop device.
func attachLoop(img string) (string, func(), error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", nil, err
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	lf, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if err != nil {
		return "", nil, err
	}
	f, err := os.Open(img)
	if err != nil {
		lf.Close()
		return "", nil, err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_FD, int(f.Fd())); err != nil {
		lf.Close()
		return "", nil, fmt.Errorf("LOOP_SET_FD %s: %w", dev, err)
	}
	return dev, func() {
		_ = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
		lf.Close()
	}, nil
}
