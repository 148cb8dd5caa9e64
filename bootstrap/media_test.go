package bootstrap

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFindSystemImageSaysWhatItLookedAt: with no medium carrying the
// system image, the search ends after its wait with an error that names
// the file it looked for and the devices it tried (what the emergency
// shell shows), instead of hanging the boot. Finding it on a real ISO is
// the e2e TestSmallMachineFromISO: this host's kernel has neither ISO
// 9660 nor FAT.
func TestFindSystemImageSaysWhatItLookedAt(t *testing.T) {
	dir := t.TempDir()
	devs := []string{filepath.Join(dir, "no-such-cdrom")}
	start := time.Now()
	_, err := FindSystemImage(NewLogger(io.Discard), ImageSearch{MediaDir: filepath.Join(dir, "media"), Wait: 300 * time.Millisecond, Devices: func() []string { return devs }})
	if err == nil || !strings.Contains(err.Error(), "/berth/system.sqfs") || !strings.Contains(err.Error(), devs[0]) {
		t.Fatalf("FindSystemImage = %v, want an error naming /berth/system.sqfs and %s", err, devs[0])
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("the search took %s, want its 300 ms wait", took)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "media")); len(ents) != 0 {
		t.Errorf("the search left %d mount points behind", len(ents))
	}
}

// stateDisk makes an ext4 filesystem labelled label holding the files in
// tree (path -> content) on a loop device, and returns the device; it
// skips without root, mke2fs or loop devices.
func stateDisk(t *testing.T, label string, tree map[string]string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mount")
	}
	if _, err := exec.LookPath("mke2fs"); err != nil {
		t.Skip("mke2fs not installed (apt-get install e2fsprogs)")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for p, content := range tree {
		writeTestFile(t, filepath.Join(root, p), content)
	}
	os.MkdirAll(root, 0o755)
	img := filepath.Join(dir, "state.img")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-d", root, img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
	dev, err := AttachLoop(img, false)
	if err != nil {
		t.Skipf("no loop device here: %v", err)
	}
	t.Cleanup(func() {
		if f, err := os.Open(dev); err == nil {
			unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
			f.Close()
		}
	})
	return dev
}

// TestFindSystemImageOnState: an installed disk's kernel command line has
// berth.image=state, and its state filesystem carries the system image
// in /boot/berth; the search finds it there (by the state device's
// label, as rancher.state.dev names it), leaves the filesystem mounted
// read-write where the state disk goes, and does not look at the media.
func TestFindSystemImageOnState(t *testing.T) {
	stateDisk(t, "BERTH_TEST_ST", map[string]string{StateImagePath: "squashfs image", "boot/initrd": "small"})
	state := filepath.Join(t.TempDir(), "state")
	media := 0
	p, err := FindSystemImage(NewLogger(io.Discard), ImageSearch{
		MediaDir: filepath.Join(t.TempDir(), "media"), Wait: 5 * time.Second,
		Devices: func() []string { media++; return nil },
		State:   StateOptions{Dev: "LABEL=BERTH_TEST_ST"}, StateDir: state,
	})
	if err != nil {
		t.Fatalf("FindSystemImage: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(state, unix.MNT_DETACH) })
	if want := filepath.Join(state, StateImagePath); p != want {
		t.Errorf("FindSystemImage = %s, want %s", p, want)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "squashfs image" {
		t.Errorf("the image read back %q, %v", b, err)
	}
	if media != 0 {
		t.Errorf("the media were looked at %d times though the state filesystem had the image", media)
	}
	// The state disk's own mount later (SetupState) finds it mounted:
	// it must be read-write.
	if err := os.WriteFile(filepath.Join(state, "written"), []byte("x"), 0o644); err != nil {
		t.Errorf("the state filesystem is not writable where it was left: %v", err)
	}
	if !ImageOnState("console=ttyS0 "+StateImageArg+" panic=10") || ImageOnState("console=ttyS0 xberth.image=state") {
		t.Errorf("ImageOnState does not match %s as a whole argument", StateImageArg)
	}
}

// TestFindSystemImageStateWithoutImage: a state filesystem without the
// image (a disk berth.iso's boot formatted) is unmounted again and the
// search goes on to the media, and its error names both places.
func TestFindSystemImageStateWithoutImage(t *testing.T) {
	dev := stateDisk(t, "BERTH_TEST_NO", map[string]string{"var/log/old": "log"})
	state := filepath.Join(t.TempDir(), "state")
	var log bytes.Buffer
	_, err := FindSystemImage(NewLogger(&log), ImageSearch{
		MediaDir: filepath.Join(t.TempDir(), "media"), Wait: 300 * time.Millisecond,
		Devices: func() []string { return []string{"/dev/no-such-cdrom"} },
		State:   StateOptions{Dev: dev}, StateDir: state,
	})
	if err == nil || !strings.Contains(err.Error(), "/"+StateImagePath) || !strings.Contains(err.Error(), "/dev/no-such-cdrom") {
		t.Fatalf("FindSystemImage = %v, want an error naming /%s and the CD-ROM", err, StateImagePath)
	}
	if IsMountPoint(state) {
		unix.Unmount(state, unix.MNT_DETACH)
		t.Errorf("the state filesystem without an image was left mounted on %s", state)
	}
}
