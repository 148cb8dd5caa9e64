package bootstrap

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestModuleOrder(t *testing.T) {
	dep := `kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/net/bonding/bonding.ko: kernel/net/tls/tls.ko
kernel/net/tls/tls.ko:
kernel/drivers/char/hw_random/virtio-rng.ko:
`
	md, err := ParseModulesDep("/lib/modules/x", strings.NewReader(dep))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		names       []string
		wantFiles   []string
		wantMissing []string
	}{
		{[]string{"virtio_net"}, []string{"kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko"}, nil},
		// "-" and "_" are the same; each module once; unknown names reported.
		{[]string{"virtio-rng", "virtio_rng", "ext4"}, []string{"kernel/drivers/char/hw_random/virtio-rng.ko"}, []string{"ext4"}},
		{[]string{"bonding", "tls"}, []string{"kernel/net/tls/tls.ko", "kernel/drivers/net/bonding/bonding.ko"}, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.names, ","), func(t *testing.T) {
			files, missing := md.Order(tt.names)
			if diff := cmp.Diff(tt.wantFiles, files); diff != "" {
				t.Errorf("Order(%q) files (-want +got):\n%s", tt.names, diff)
			}
			if diff := cmp.Diff(tt.wantMissing, missing); diff != "" {
				t.Errorf("Order(%q) missing (-want +got):\n%s", tt.names, diff)
			}
		})
	}
}

func TestMountString(t *testing.T) {
	got := EarlyMounts()[0].String()
	if want := "mount -t proc -o nosuid,nodev,noexec proc /proc"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestStateDiskIdentity(t *testing.T) {
	mkfs, err := exec.LookPath("mke2fs")
	if err != nil {
		t.Skip("mke2fs not installed (apt-get install e2fsprogs)")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(16 << 20); err != nil {
		t.Fatal(err)
	}
	blank, err := IsBlank(f)
	if err != nil || !blank {
		t.Fatalf("IsBlank(new sparse file) = %v, %v; want true", blank, err)
	}
	if _, ok := ReadExtIdentity(f); ok {
		t.Errorf("ReadExtIdentity(blank) found a filesystem")
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-t", "ext4", "-L", StateLabel, img).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
	id, ok := ReadExtIdentity(f)
	if !ok || id.Label != StateLabel || len(id.UUID) != 36 {
		t.Errorf("ReadExtIdentity(formatted) = %+v, %v; want label %s and a UUID", id, ok, StateLabel)
	}
	if blank, _ := IsBlank(f); blank {
		t.Errorf("IsBlank(formatted disk) = true: Berth would format a disk with data")
	}
	// One non-zero byte anywhere in the first MiB makes a disk not blank.
	g, _ := os.Create(filepath.Join(dir, "b.img"))
	g.Truncate(4 << 20)
	g.WriteAt([]byte{1}, 1<<20-1)
	if blank, _ := IsBlank(g); blank {
		t.Errorf("IsBlank(disk with a byte at 1MiB-1) = true")
	}
	f.Close()
	g.Close()
}

func TestTimeline(t *testing.T) {
	clock := time.Duration(0)
	tl := &Timeline{now: func() time.Duration { return clock }}
	clock = 2 * time.Second
	end := tl.Begin("modules")
	clock += 1500 * time.Millisecond
	end(nil)
	end = tl.Begin("engines")
	clock += time.Second
	end(os.ErrNotExist)
	tl.Mark("ready")
	path := filepath.Join(t.TempDir(), "var/log/boot-timeline.json")
	if err := tl.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTimeline(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Phase{
		{Name: "modules", Start: 2 * time.Second, Duration: 1500 * time.Millisecond},
		{Name: "engines", Start: 3500 * time.Millisecond, Duration: time.Second, Error: "file does not exist"},
		{Name: "ready", Start: 4500 * time.Millisecond},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadTimeline (-want +got):\n%s", diff)
	}
	var table bytes.Buffer
	if err := WriteTable(&table, got); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "modules  2.000  3.500  1.500") {
		t.Errorf("WriteTable:\n%s\nwant a modules row 2.000 3.500 1.500", table.String())
	}
	var svg bytes.Buffer
	if err := WriteSVG(&svg, got); err != nil {
		t.Fatal(err)
	}
	if s := svg.String(); !strings.HasPrefix(s, "<svg") || strings.Count(s, "<rect") != 3 || !strings.Contains(s, "#d94a4a") {
		t.Errorf("WriteSVG: want an svg with 3 bars, the failed one red:\n%s", s)
	}
}

func TestMoveTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for p, c := range map[string]string{"bin/ros": "ros", "lib/modules/x/a.ko": "a", "berth/system.sqfs": "big"} {
		os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(src, p), []byte(c), 0o755)
	}
	os.Symlink("bin/ros", filepath.Join(src, "init"))
	keep := filepath.Join(src, "berth/system.sqfs")
	n, _, err := moveTree(src, dst, []string{keep})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("moveTree moved %d entries, want 3 (2 files, 1 link)", n)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "bin/ros")); err != nil || string(b) != "ros" {
		t.Errorf("moved bin/ros = %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "init")); err != nil || l != "bin/ros" {
		t.Errorf("moved init link = %q, %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(src, "bin/ros")); !os.IsNotExist(err) {
		t.Errorf("source bin/ros still there after the move (memory used twice)")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("kept file removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "berth/system.sqfs")); !os.IsNotExist(err) {
		t.Errorf("kept file copied")
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dst, "bin/ros"), &st); err != nil || st.Mode&0o777 != 0o755 {
		t.Errorf("moved file mode = %o, want 755", st.Mode&0o777)
	}
}

func TestModuleResolve(t *testing.T) {
	dep := `kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/fat/fat.ko:
kernel/drivers/net/virtio_net.ko:
kernel/net/netfilter/nft_chain_nat.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
`
	alias := `alias fs-vfat vfat
alias virtio:d00000001v* virtio_net
alias nft-chain-2-nat nft_chain_nat
alias crypto-crc32c crc32c_generic
alias crypto-crc32c crc32c_intel
alias pci:v00008086d0000[0-9]*sv* nothing_shipped
not an alias line
`
	md, err := ParseModulesDep("/lib/modules/x", strings.NewReader(dep))
	if err != nil {
		t.Fatal(err)
	}
	if err := md.ParseAliases(strings.NewReader(alias)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want []string
	}{
		{"vfat", []string{"vfat"}},                 // a module name is itself
		{"crc32c-intel", []string{"crc32c_intel"}}, // "-" and "_" alike
		{"fs-vfat", []string{"vfat"}},              // what mount(2) asks for
		{"fs_vfat", []string{"vfat"}},
		{"virtio:d00000001v00001AF4", []string{"virtio_net"}}, // a device's modalias
		{"nft-chain-2-nat", []string{"nft_chain_nat"}},
		{"crypto-crc32c", []string{"crc32c_generic", "crc32c_intel"}}, // every match
		{"pci:v00008086d00001234sv0", []string{"nothing_shipped"}},    // "[0-9]" is a range, not "-"
		{"net-pf-99", nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, md.Resolve(tt.name)); diff != "" {
			t.Errorf("Resolve(%q) (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestDeviceAliases(t *testing.T) {
	sys := t.TempDir()
	for dev, alias := range map[string]string{
		"bus/pci/devices/0000:00:03.0":    "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
		"bus/virtio/devices/virtio0":      "virtio:d00000001v00001AF4\n",
		"bus/virtio/devices/virtio1":      "virtio:d00000001v00001AF4\n", // a second NIC: once
		"bus/platform/devices/serial8250": "",                            // no alias: nothing
	} {
		if err := os.MkdirAll(filepath.Join(sys, dev), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, dev, "modalias"), []byte(alias), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := DeviceAliases(sys)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", "virtio:d00000001v00001AF4"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DeviceAliases (-want +got):\n%s", diff)
	}
}

// TestPrefetch checks that Prefetch reads whole files, the files under a
// directory (the image store's layer is a tree), and skips what is missing
// instead of failing the boot.
func TestPrefetch(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("x"), 3<<20+17)
	if err := os.WriteFile(filepath.Join(dir, "dockerd"), big, 0o755); err != nil {
		t.Fatal(err)
	}
	images := filepath.Join(dir, "images")
	if err := os.MkdirAll(filepath.Join(images, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "a.tar"), []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "sub", "ros"), []byte("123"), 0o755); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(dir, "dockerd"), filepath.Join(dir, "missing"), images}
	if got := PrefetchSize(paths...); got != int64(len(big))+8 {
		t.Errorf("PrefetchSize = %d, want %d", got, len(big)+8)
	}
	files, n := Prefetch(paths...)
	if files != 3 || n != int64(len(big))+8 {
		t.Errorf("Prefetch = %d files, %d bytes; want 3 files, %d bytes", files, n, len(big)+8)
	}
}

// TestPrimeCgroups checks, on a plain directory standing in for the
// cgroup2 root, that the kept cgroup is made, that a second call finds it
// without error, and that a controller the kernel refuses is named while
// the others are still asked for and the cgroup still made. The real
// cgroup2 root is checked in the e2e suite.
func TestPrimeCgroups(t *testing.T) {
	dir := t.TempDir()
	ctl := filepath.Join(dir, "cgroup.subtree_control")
	if err := os.WriteFile(ctl, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := PrimeCgroups(dir, "keep"); err != nil {
			t.Fatalf("PrimeCgroups (call %d): %v", i+1, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "keep")); err != nil || !st.IsDir() {
		t.Errorf("kept cgroup keep: %v", err)
	}
	if b, _ := os.ReadFile(ctl); string(b) != "+pids" {
		t.Errorf("last write to cgroup.subtree_control = %q, want +pids (one controller per write)", b)
	}

	// Every write refused (here: the file is a directory): each
	// controller is named, and the cgroup is made anyway.
	bad := t.TempDir()
	if err := os.Mkdir(filepath.Join(bad, "cgroup.subtree_control"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := PrimeCgroups(bad, "keep")
	if err == nil {
		t.Fatal("PrimeCgroups with an unwritable cgroup.subtree_control = nil error")
	}
	for _, c := range CgroupControllers() {
		if !strings.Contains(err.Error(), "enable cgroup controller "+c+":") {
			t.Errorf("error does not name controller %s: %v", c, err)
		}
	}
	if _, serr := os.Stat(filepath.Join(bad, "keep")); serr != nil {
		t.Errorf("kept cgroup not made after the controller errors: %v", serr)
	}
}

func TestMemAvailable(t *testing.T) {
	in := "MemTotal:        1004736 kB\nMemFree:          410224 kB\nMemAvailable:     495920 kB\nBuffers:            1234 kB\n"
	got, err := parseMeminfo(strings.NewReader(in), "MemAvailable:")
	if err != nil || got != 495920<<10 {
		t.Errorf("parseMeminfo(MemAvailable) = %d, %v; want %d", got, err, 495920<<10)
	}
	if got, err := parseMeminfo(strings.NewReader(in), "MemTotal:"); err != nil || got != 1004736<<10 {
		t.Errorf("parseMeminfo(MemTotal) = %d, %v; want %d", got, err, 1004736<<10)
	}
	if _, err := parseMeminfo(strings.NewReader("MemTotal: 1 kB\n"), "MemAvailable:"); err == nil {
		t.Error("parseMeminfo without a MemAvailable line = nil error")
	}
	if n, err := MemAvailable(); err != nil || n <= 0 {
		t.Errorf("MemAvailable on this machine = %d, %v", n, err)
	}
}

// The initramfs's few modules give way to the system image's full tree:
// the tmpfs copies are gone (their RAM with them), the image's modules
// are what /lib/modules shows, read-only, and the index read afterwards
// resolves a module only the image has.
func TestUseSystemModules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "lib/modules/6.1.0-test")
	sys := filepath.Join(root, "usr/lib/modules/6.1.0-test")
	writeTestFile(t, filepath.Join(dir, "modules.dep"), "kernel/fs/isofs/isofs.ko:\n")
	writeTestFile(t, filepath.Join(dir, "kernel/fs/isofs/isofs.ko"), strings.Repeat("i", 4096))
	writeTestFile(t, filepath.Join(sys, "modules.dep"), "kernel/fs/isofs/isofs.ko:\nkernel/net/bridge/bridge.ko: kernel/net/802/stp.ko\nkernel/net/802/stp.ko:\n")
	writeTestFile(t, filepath.Join(sys, "kernel/net/bridge/bridge.ko"), "bridge")

	freed, err := UseSystemModules(sys, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if freed != 4096+int64(len("kernel/fs/isofs/isofs.ko:\n")) {
		t.Errorf("freed %d bytes, want the initramfs copies' size", freed)
	}
	md, err := LoadModuleDeps(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, missing := md.Order([]string{"bridge"})
	if len(missing) != 0 || len(files) != 2 || !strings.HasSuffix(files[1], "bridge.ko") {
		t.Errorf("bridge resolves to %v (missing %v), want stp then bridge from the image", files, missing)
	}
	if _, err := os.Stat(filepath.Join(dir, "kernel/fs/isofs/isofs.ko")); err == nil {
		t.Error("the initramfs's isofs.ko still shows; the image has none")
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err == nil {
		t.Error("the modules directory is writable; it should be the read-only image")
	}
	// Unmounted, the directory underneath is empty: the tmpfs copies are gone.
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the initramfs's copies are still there under the mount: %v", ents)
	}
}

// An image without its own modules (built before the split) changes
// nothing.
func TestUseSystemModulesWithoutThem(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "lib/modules/6.1.0-test")
	writeTestFile(t, filepath.Join(dir, "modules.dep"), "")
	freed, err := UseSystemModules(filepath.Join(root, "usr/lib/modules/6.1.0-test"), dir)
	if err != nil || freed != 0 {
		t.Fatalf("UseSystemModules = %d, %v; want 0, nil", freed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err != nil {
		t.Errorf("the initramfs's index is gone: %v", err)
	}
}

func writeTestFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
