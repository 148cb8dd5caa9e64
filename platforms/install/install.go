package install

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthos/berth/bootstrap"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

type installConfig struct {
	grubDir  string
	progress io.Writer
}

// InstallOption configures Install.
type InstallOption func(*installConfig)

// WithGrubDir sets where GRUB's i386-pc and x86_64-efi directories are
// (default /usr/lib/grub, from Debian's grub-pc-bin and grub-efi-amd64-bin).
func WithGrubDir(dir string) InstallOption { return func(c *installConfig) { c.grubDir = dir } }

// WithProgress makes Install say each step on w.
func WithProgress(w io.Writer) InstallOption { return func(c *installConfig) { c.progress = w } }

// GRUB modules built into the core images: everything needed to find the
// state filesystem and boot Linux from it, so no module is loaded later.
var (
	grubCommon = []string{"part_gpt", "part_msdos", "ext2", "fat", "search", "search_fs_uuid", "search_label",
		"configfile", "normal", "linux", "echo", "test", "gzio", "serial", "terminal", "sleep", "reboot", "halt"}
	grubBIOS = []string{"biosdisk"}
	grubEFI  = []string{"efi_gop", "efi_uga", "all_video"}
)

// Install carries out plan p on p.Device: partition table, GRUB for BIOS
// and UEFI, the EFI system partition and the state filesystem with the
// kernel, initrd and cloud-config. It writes to p.Device only. The caller
// has run Check (or was told to force).
func Install(ctx context.Context, p *Plan, opts ...InstallOption) error {
	c := installConfig{grubDir: "/usr/lib/grub", progress: io.Discard}
	for _, o := range opts {
		o(&c)
	}
	step := func(format string, a ...any) { fmt.Fprintf(c.progress, "install: "+format+"\n", a...) }
	tmp, err := os.MkdirTemp("", "berth-install-")
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer os.RemoveAll(tmp)

	step("partitioning %s (GPT)", p.Device)
	if err := writePartitionTable(p); err != nil {
		return err
	}
	step("GRUB for BIOS")
	if err := installBIOS(ctx, p, c.grubDir, tmp); err != nil {
		return err
	}
	step("EFI system partition")
	if err := writeESP(ctx, p, c.grubDir, tmp); err != nil {
		return err
	}
	step("state partition (ext4 %s) with kernel, initrd and cloud-config", StateLabel)
	if err := writeState(ctx, p, tmp); err != nil {
		return err
	}
	if err := syncDevice(p.Device); err != nil {
		return err
	}
	step("done")
	return nil
}

// writePartitionTable clears old signatures at both ends of the device
// and writes the GPT (with its protective MBR).
func writePartitionTable(p *Plan) error {
	f, err := os.OpenFile(p.Device, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("partition %s: %w", p.Device, err)
	}
	defer f.Close()
	l := p.Layout
	zero := make([]byte, 1<<20)
	if _, err := f.WriteAt(zero, 0); err != nil {
		return fmt.Errorf("partition %s: clear start: %w", p.Device, err)
	}
	tail := int64(len(zero))
	if l.DiskBytes < tail {
		tail = l.DiskBytes
	}
	if _, err := f.WriteAt(zero[:tail], l.DiskBytes-tail); err != nil {
		return fmt.Errorf("partition %s: clear end: %w", p.Device, err)
	}
	t := &gpt.Table{LogicalSectorSize: SectorSize, PhysicalSectorSize: SectorSize, ProtectiveMBR: true, GUID: strings.ToUpper(l.DiskGUID)}
	for _, pt := range l.Partitions {
		t.Partitions = append(t.Partitions, &gpt.Partition{
			Index: pt.Number, Start: pt.Start, End: pt.End, Type: pt.Type, Name: pt.Name, GUID: strings.ToUpper(pt.GUID),
		})
	}
	if err := t.Write(f, l.DiskBytes); err != nil {
		return fmt.Errorf("partition %s: write GPT: %w", p.Device, err)
	}
	return f.Close()
}

// earlyConfig is built into both GRUB images: find the state filesystem by
// its UUID and read its grub.cfg.
func earlyConfig(p *Plan) string {
	return fmt.Sprintf("search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n", p.StateUUID)
}

// GrubConfig is /boot/grub/grub.cfg on the state partition.
func GrubConfig(p *Plan) string {
	return fmt.Sprintf(`serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=1
set default=0
menuentry "Berth" {
  linux /boot/vmlinuz %s
  initrd /boot/initrd
}
`, p.Cmdline)
}

func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(out.String()))
	}
	return nil
}

func mkimage(ctx context.Context, p *Plan, grubDir, tmp, format, out string, modules []string) error {
	cfg := filepath.Join(tmp, "early.cfg")
	if err := os.WriteFile(cfg, []byte(earlyConfig(p)), 0o644); err != nil {
		return fmt.Errorf("grub-mkimage: %w", err)
	}
	dir := map[string]string{"i386-pc": "i386-pc", "x86_64-efi": "x86_64-efi"}[format]
	args := []string{"-O", format, "-d", filepath.Join(grubDir, dir), "-p", "/boot/grub", "-c", cfg, "-o", out}
	args = append(args, modules...)
	if err := run(ctx, nil, "grub-mkimage", args...); err != nil {
		return fmt.Errorf("build GRUB %s image: %w", format, err)
	}
	return nil
}

// MBR and core image offsets GRUB's boot.img and diskboot.img use.
const (
	bootKernelSector = 0x5c  // where boot.img reads core.img's first sector from
	bootDriveCheck   = 0x66  // a jump taken for floppies; NOPed for disks
	bootPartStart    = 0x1b8 // the MBR partition table area starts here
	blocklistOff     = 512 - 12
	coreSegment      = 0x820
)

// installBIOS writes GRUB's core.img into the BIOS boot partition and a
// patched boot.img into the MBR's code area (keeping the protective MBR's
// partition table), as grub-bios-setup does.
func installBIOS(ctx context.Context, p *Plan, grubDir, tmp string) error {
	corePath := filepath.Join(tmp, "core.img")
	if err := mkimage(ctx, p, grubDir, tmp, "i386-pc", corePath, append(append([]string{}, grubBIOS...), grubCommon...)); err != nil {
		return err
	}
	core, err := os.ReadFile(corePath)
	if err != nil {
		return fmt.Errorf("install GRUB (BIOS): %w", err)
	}
	boot, err := os.ReadFile(filepath.Join(grubDir, "i386-pc", "boot.img"))
	if err != nil {
		return fmt.Errorf("install GRUB (BIOS): %w", err)
	}
	bp := p.Layout.Part(PartBIOS)
	if int64(len(core)) > bp.Bytes() || len(core) < 512 || len(boot) != 512 {
		return fmt.Errorf("install GRUB (BIOS): core image of %d bytes does not fit the %d-byte BIOS boot partition", len(core), bp.Bytes())
	}
	sectors := (len(core) + 511) / 512
	// diskboot.img (core's first sector) loads the rest from one block.
	binary.LittleEndian.PutUint64(core[blocklistOff:], bp.Start+1)
	binary.LittleEndian.PutUint16(core[blocklistOff+8:], uint16(sectors-1))
	binary.LittleEndian.PutUint16(core[blocklistOff+10:], coreSegment)
	binary.LittleEndian.PutUint64(boot[bootKernelSector:], bp.Start)
	boot[bootDriveCheck], boot[bootDriveCheck+1] = 0x90, 0x90

	f, err := os.OpenFile(p.Device, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("install GRUB (BIOS): %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(core, bp.Offset()); err != nil {
		return fmt.Errorf("install GRUB (BIOS): write core image: %w", err)
	}
	if _, err := f.WriteAt(boot[:bootPartStart], 0); err != nil {
		return fmt.Errorf("install GRUB (BIOS): write boot sector: %w", err)
	}
	return f.Close()
}

// writeESP formats the EFI system partition in place and copies GRUB's
// EFI image to the removable-media path every firmware boots.
func writeESP(ctx context.Context, p *Plan, grubDir, tmp string) error {
	efi := filepath.Join(tmp, "BOOTX64.EFI")
	if err := mkimage(ctx, p, grubDir, tmp, "x86_64-efi", efi, append(append([]string{}, grubEFI...), grubCommon...)); err != nil {
		return err
	}
	if err := os.Chtimes(efi, p.Epoch, p.Epoch); err != nil {
		return fmt.Errorf("EFI system partition: %w", err)
	}
	ep := p.Layout.Part(PartEFI)
	if err := run(ctx, []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(p.Epoch.Unix(), 10)}, "mkfs.fat",
		"--invariant", "-F", "16", "--offset", strconv.FormatUint(ep.Start, 10), "-n", "BERTH-EFI", "-i", fmt.Sprintf("%08X", p.EFIVolumeID),
		p.Device, strconv.FormatInt(ep.Bytes()/1024, 10)); err != nil {
		return fmt.Errorf("EFI system partition: %w", err)
	}
	// mcopy -s -m keeps the tree's times (mmd would stamp the directories
	// with the clock).
	tree := filepath.Join(tmp, "esp")
	if err := copyFile(efi, filepath.Join(tree, "EFI/BOOT/BOOTX64.EFI"), 0o644); err != nil {
		return fmt.Errorf("EFI system partition: %w", err)
	}
	if err := touchTree(tree, p.Epoch); err != nil {
		return fmt.Errorf("EFI system partition: %w", err)
	}
	img := fmt.Sprintf("%s@@%d", p.Device, ep.Offset())
	env := []string{"MTOOLS_SKIP_CHECK=1", "SOURCE_DATE_EPOCH=" + strconv.FormatInt(p.Epoch.Unix(), 10)}
	if err := run(ctx, env, "mcopy", "-s", "-m", "-i", img, filepath.Join(tree, "EFI"), "::/"); err != nil {
		return fmt.Errorf("EFI system partition: %w", err)
	}
	return nil
}

// writeState builds the state partition's tree in tmp and makes the ext4
// filesystem from it at the partition's offset.
func writeState(ctx context.Context, p *Plan, tmp string) error {
	root := filepath.Join(tmp, "state")
	type stateFile struct {
		src, dst string
		mode     os.FileMode
	}
	files := []stateFile{{p.Kernel, "boot/vmlinuz", 0o644}, {p.Initrd, "boot/initrd", 0o644}}
	if p.SystemImage != "" {
		files = append(files, stateFile{p.SystemImage, bootstrap.StateImagePath, 0o644})
	}
	if p.CloudConfig != "" {
		files = append(files, stateFile{p.CloudConfig, CloudConfigPath, 0o600})
	}
	for _, f := range files {
		if err := copyFile(f.src, filepath.Join(root, f.dst), f.mode); err != nil {
			return fmt.Errorf("state partition: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "boot/grub"), 0o755); err != nil {
		return fmt.Errorf("state partition: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "boot/grub/grub.cfg"), []byte(GrubConfig(p)), 0o644); err != nil {
		return fmt.Errorf("state partition: %w", err)
	}
	if err := os.Chmod(filepath.Join(tmp, "state"), 0o755); err != nil {
		return fmt.Errorf("state partition: %w", err)
	}
	if err := touchTree(root, p.Epoch); err != nil {
		return fmt.Errorf("state partition: %w", err)
	}
	sp := p.Layout.Part(PartState)
	const block = 4096
	epoch := strconv.FormatInt(p.Epoch.Unix(), 10)
	args := []string{"-q", "-F", "-t", "ext4", "-b", strconv.Itoa(block), "-L", StateLabel, "-U", p.StateUUID,
		"-E", fmt.Sprintf("offset=%d,hash_seed=%s,root_owner=0:0,nodiscard", sp.Offset(), p.StateUUID),
		"-d", root, p.Device, strconv.FormatInt(sp.Bytes()/block, 10)}
	if err := run(ctx, []string{"E2FSPROGS_FAKE_TIME=" + epoch, "SOURCE_DATE_EPOCH=" + epoch}, "mke2fs", args...); err != nil {
		return fmt.Errorf("state partition: %w", err)
	}
	// mke2fs -d takes each inode's change time from the copied file (the
	// clock): set every time of every inode to the epoch.
	var cmds strings.Builder
	if err := filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(path, root), "/")
		for _, field := range []string{"atime", "mtime", "ctime", "crtime"} {
			fmt.Fprintf(&cmds, "sif %q %s @%s\nsif %q %s_extra 0\n", rel, field, epoch, rel, field)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("state partition: %w", err)
	}
	cmdFile := filepath.Join(tmp, "debugfs.cmd")
	if err := os.WriteFile(cmdFile, []byte(cmds.String()), 0o644); err != nil {
		return fmt.Errorf("state partition: %w", err)
	}
	if err := run(ctx, []string{"E2FSPROGS_FAKE_TIME=" + epoch}, "debugfs", "-w", "-f", cmdFile, fmt.Sprintf("%s?offset=%d", p.Device, sp.Offset())); err != nil {
		return fmt.Errorf("state partition: set times: %w", err)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

func touchTree(root string, t time.Time) error {
	var paths []string
	if err := filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
		paths = append(paths, path)
		return err
	}); err != nil {
		return err
	}
	for i := len(paths) - 1; i >= 0; i-- {
		if err := os.Chtimes(paths[i], t, t); err != nil {
			return err
		}
	}
	return nil
}

// syncDevice flushes the device and, for a block device, asks the kernel
// to re-read its partition table.
func syncDevice(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dev, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dev, err)
	}
	if st, err := f.Stat(); err == nil && st.Mode()&os.ModeDevice != 0 {
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKRRPART, 0); e != 0 {
			return fmt.Errorf("re-read partition table of %s: %w", dev, e)
		}
	}
	return f.Close()
}

// DeviceSize is the size of a block device or image file in bytes.
func DeviceSize(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	return n, nil
}
