package datasources

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIdentifyDoesNotWaitForADeadDevice: a device whose open never
// returns (here a FIFO without a writer) costs identification at most
// scanLimit, and the record says why the devices are missing.
func TestIdentifyDoesNotWaitForADeadDevice(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"sys/class/dmi/id/sys_vendor": "QEMU\n"})
	if err := os.MkdirAll(filepath.Join(root, "sys/class/block/sr0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(root, "dev/sr0")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// Let the blocked scan go at the end of the test.
	defer func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}()
	start := time.Now()
	p := Identify(root)
	took := time.Since(start)
	if took > scanLimit+time.Second {
		t.Errorf("Identify took %s with a dead device, want at most %s", took, scanLimit)
	}
	if !strings.Contains(p.ScanError, "not all read") || p.SysVendor != "QEMU" {
		t.Errorf("Identify = %+v, want DMI read and a ScanError", p)
	}
}
