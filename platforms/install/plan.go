package install

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berthos/berth/bootstrap"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// Platform is what the installed system runs on; it picks the datasources
// and consoles on the kernel command line.
type Platform string

// The platforms `ros install -t` takes.
const (
	Generic   Platform = "generic"
	Amazon    Platform = "amazon"
	GCE       Platform = "gce"
	OpenStack Platform = "openstack"
)

// Platforms lists every platform, in the order help text shows them.
func Platforms() []Platform { return []Platform{Generic, Amazon, GCE, OpenStack} }

// ParsePlatform checks s against the known platforms; "" is Generic.
func ParsePlatform(s string) (Platform, error) {
	if s == "" {
		return Generic, nil
	}
	for _, p := range Platforms() {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("parse platform: unknown platform %q (want generic, amazon, gce or openstack)", s)
}

// Datasources are the cloud-init datasources the platform's image reads
// its user-data from; none for generic (the cloud-config on the state
// partition is the config).
func (p Platform) Datasources() []string {
	switch p {
	case Amazon:
		return []string{"ec2"}
	case GCE:
		return []string{"gce"}
	case OpenStack:
		return []string{"configdrive", "openstack"}
	}
	return nil
}

// Consoles are the kernel consoles: the serial port only on EC2 and GCE
// (their console log is the serial port), the screen and the serial port
// elsewhere (the last one is /dev/console).
func (p Platform) Consoles() []string {
	switch p {
	case Amazon, GCE:
		return []string{"ttyS0,115200n8"}
	}
	return []string{"tty0", "ttyS0,115200n8"}
}

// StateLabel is the label of the state partition's ext4 filesystem.
const StateLabel = "RANCHER_STATE"

// CloudConfigPath is where the installer puts the given cloud-config on
// the state partition (RancherOS's path).
const CloudConfigPath = "var/lib/rancher/conf/cloud-config.yml"

// WholeInitrdArg goes on the command line of every boot of the whole
// initrd (the system image inside it): the kernel unpacks the initramfs
// into a tmpfs capped at half the RAM it counts then, which leaves out the
// initrd's own 80 MB; below about 384 MiB the 95 MB of files no longer fit,
// the unpacking fails ("Initramfs unpacking failed: write error") and the
// system image is cut short. A ramfs has no cap; PID 1 moves all but the
// system image into a tmpfs at once anyway.
const WholeInitrdArg = "rootfstype=ramfs"

// BootArgs go on the kernel command line of every boot of the image (the
// ISO's, an installed disk's, a cloud image's, make run's): the kernel's
// crypto self-tests are skipped, as upstream's default
// (CRYPTO_MANAGER_DISABLE_TESTS) has it and Debian's kernel does not. They
// test each algorithm the kernel registers, at boot and as modules load,
// 0.3-0.4 s of a TCG boot before /init; with fips=1 the kernel runs them
// regardless.
const BootArgs = "cryptomgr.notests"

// KernelCmdline is the installed system's kernel command line for platform
// p, with extra (the -a argument) appended. wholeInitrd says the initrd
// holds the system image (WholeInitrdArg); else the image is on the state
// partition (bootstrap.StateImageArg).
func KernelCmdline(p Platform, extra string, wholeInitrd bool) string {
	args := []string{"rancher.state.dev=LABEL=" + StateLabel, "rancher.state.wait"}
	if ds := p.Datasources(); len(ds) > 0 {
		args = append(args, "rancher.cloud_init.datasources=["+strings.Join(ds, ",")+"]")
	}
	for _, c := range p.Consoles() {
		args = append(args, "console="+c)
	}
	if wholeInitrd {
		args = append(args, WholeInitrdArg)
	} else {
		args = append(args, bootstrap.StateImageArg)
	}
	args = append(args, "panic=10", BootArgs)
	if extra = strings.TrimSpace(extra); extra != "" {
		args = append(args, extra)
	}
	return strings.Join(args, " ")
}

// SectorSize is the logical sector size the layout is planned in.
const SectorSize = 512

// Partition is one planned GPT partition, in 512-byte sectors.
type Partition struct {
	Number int
	Name   string
	Type   gpt.Type
	Start  uint64 // first sector
	End    uint64 // last sector (inclusive)
	GUID   string
}

// Offset is the partition's start in bytes.
func (p Partition) Offset() int64 { return int64(p.Start) * SectorSize }

// Bytes is the partition's size in bytes.
func (p Partition) Bytes() int64 { return int64(p.End-p.Start+1) * SectorSize }

// Partition numbers in the layout.
const (
	PartBIOS  = 1
	PartEFI   = 2
	PartState = 3
)

const (
	alignSectors = 2048           // 1 MiB
	biosSectors  = 2048           // 1 MiB BIOS boot partition
	efiSectors   = 32 << 20 / 512 // 32 MiB EFI system partition
	gptTailSecs  = 33             // backup partition array + header
	minStateSize = 256 << 20      // room for kernel, initrd and some state
	minDiskBytes = 1<<20 + 1<<20 + 32<<20 + minStateSize + 1<<20
)

// MinDiskBytes is the smallest disk the installer takes.
const MinDiskBytes = minDiskBytes

// Layout is the planned partition table of a disk.
type Layout struct {
	DiskBytes  int64
	DiskGUID   string
	Partitions []Partition
}

// Part returns partition number n of the layout.
func (l Layout) Part(n int) Partition { return l.Partitions[n-1] }

// PlanLayout lays out a disk of diskBytes: BIOS boot, EFI system, state
// taking the rest, each aligned to 1 MiB. GUIDs derive from seed, so the
// same seed gives the same bytes (cloud images); an empty seed is random.
func PlanLayout(diskBytes int64, seed string) (Layout, error) {
	if diskBytes < minDiskBytes {
		return Layout{}, fmt.Errorf("plan layout: disk of %s is too small, Berth needs at least %s", human(diskBytes), human(minDiskBytes))
	}
	if seed == "" {
		seed = rand.Text()
	}
	sectors := uint64(diskBytes) / SectorSize
	lastUsable := sectors - 1 - gptTailSecs
	bios := Partition{Number: PartBIOS, Name: "BIOS boot", Type: gpt.BIOSBoot, Start: alignSectors}
	bios.End = bios.Start + biosSectors - 1
	efi := Partition{Number: PartEFI, Name: "EFI system", Type: gpt.EFISystemPartition, Start: bios.End + 1}
	efi.End = efi.Start + efiSectors - 1
	state := Partition{Number: PartState, Name: StateLabel, Type: gpt.LinuxFilesystem, Start: efi.End + 1}
	state.End = (lastUsable+1)/alignSectors*alignSectors - 1
	l := Layout{DiskBytes: diskBytes, DiskGUID: DeriveUUID(seed, "disk"), Partitions: []Partition{bios, efi, state}}
	for i := range l.Partitions {
		l.Partitions[i].GUID = DeriveUUID(seed, "part", l.Partitions[i].Name)
	}
	return l, nil
}

// DeriveUUID makes a version-4-shaped UUID from a hash of seed and names.
func DeriveUUID(seed string, names ...string) string {
	h := sha256.Sum256([]byte(seed + "\x00" + strings.Join(names, "\x00")))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Plan is everything Install will do to one device.
type Plan struct {
	Device   string
	Layout   Layout
	Platform Platform
	Cmdline  string
	Kernel   string // file copied to /boot/vmlinuz
	Initrd   string // file copied to /boot/initrd
	// SystemImage is the file copied to /boot/berth/system.sqfs, which
	// the small initrd's PID 1 mounts from there; "" when Initrd holds
	// the system image (then read into RAM at every boot).
	SystemImage string
	CloudConfig string // file copied to CloudConfigPath; "" for none
	StateUUID   string // ext4 UUID of the state filesystem
	EFIVolumeID uint32 // FAT volume ID of the EFI system partition
	Epoch       time.Time
}

type planConfig struct {
	platform    Platform
	extra       string
	kernel      string
	initrd      string
	systemImage string
	cloudConfig string
	seed        string
	epoch       time.Time
}

// Option configures NewPlan.
type Option func(*planConfig)

// WithPlatform sets the platform (default Generic).
func WithPlatform(p Platform) Option { return func(c *planConfig) { c.platform = p } }

// WithAppend adds extra kernel arguments.
func WithAppend(args string) Option { return func(c *planConfig) { c.extra = args } }

// WithKernel sets the kernel file to install.
func WithKernel(path string) Option { return func(c *planConfig) { c.kernel = path } }

// WithInitrd sets the initrd file to install: the small one, with
// WithSystemImage, or one that holds the system image.
func WithInitrd(path string) Option { return func(c *planConfig) { c.initrd = path } }

// WithSystemImage sets the system image to install beside the small
// initrd ("" for none: the initrd holds it).
func WithSystemImage(path string) Option { return func(c *planConfig) { c.systemImage = path } }

// WithCloudConfig sets the cloud-config file to put on the state partition.
func WithCloudConfig(path string) Option { return func(c *planConfig) { c.cloudConfig = path } }

// WithSeed makes every GUID, UUID and volume ID derive from seed, for
// reproducible images; without it they are random.
func WithSeed(seed string) Option { return func(c *planConfig) { c.seed = seed } }

// WithEpoch sets the timestamp of every file and filesystem written (for
// reproducible images; default now).
func WithEpoch(t time.Time) Option { return func(c *planConfig) { c.epoch = t } }

// NewPlan plans the install of Berth onto device, of size bytes.
func NewPlan(device string, size int64, opts ...Option) (*Plan, error) {
	c := planConfig{platform: Generic}
	for _, o := range opts {
		o(&c)
	}
	if _, err := ParsePlatform(string(c.platform)); err != nil {
		return nil, fmt.Errorf("plan install: %w", err)
	}
	if c.kernel == "" || c.initrd == "" {
		return nil, fmt.Errorf("plan install: kernel and initrd files are required")
	}
	if c.seed == "" {
		c.seed = rand.Text()
	}
	if c.epoch.IsZero() {
		c.epoch = time.Now()
	}
	l, err := PlanLayout(size, c.seed)
	if err != nil {
		return nil, fmt.Errorf("plan install on %s: %w", device, err)
	}
	h := sha256.Sum256([]byte(c.seed + "\x00efi"))
	return &Plan{
		Device:      device,
		Layout:      l,
		Platform:    c.platform,
		Cmdline:     KernelCmdline(c.platform, c.extra, c.systemImage == ""),
		Kernel:      c.kernel,
		Initrd:      c.initrd,
		SystemImage: c.systemImage,
		CloudConfig: c.cloudConfig,
		StateUUID:   DeriveUUID(c.seed, "state"),
		EFIVolumeID: uint32(h[0])<<24 | uint32(h[1])<<16 | uint32(h[2])<<8 | uint32(h[3]),
		Epoch:       c.epoch.UTC().Truncate(time.Second),
	}, nil
}

// String is the plan as the user confirms it.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Install Berth (%s) to %s (%s). Everything on %s will be lost.\n", p.Platform, p.Device, human(p.Layout.DiskBytes), p.Device)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tstart\tsize\ttype\tcontents")
	contents := map[int]string{
		PartBIOS:  "GRUB (BIOS)",
		PartEFI:   "FAT, GRUB (UEFI) /EFI/BOOT/BOOTX64.EFI",
		PartState: "ext4 " + StateLabel + ": /boot/vmlinuz, /boot/initrd, state",
	}
	if p.SystemImage != "" {
		contents[PartState] = "ext4 " + StateLabel + ": /boot/vmlinuz, /boot/initrd, " + StateImagePath + ", state"
	}
	for _, pt := range p.Layout.Partitions {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", pt.Number, human(pt.Offset()), human(pt.Bytes()), pt.Name, contents[pt.Number])
	}
	tw.Flush()
	fmt.Fprintf(&b, "Kernel: %s\nInitrd: %s\n", p.Kernel, p.Initrd)
	if p.SystemImage != "" {
		fmt.Fprintf(&b, "System image: %s -> %s\n", p.SystemImage, StateImagePath)
	} else {
		fmt.Fprintf(&b, "System image: inside the initrd (read into RAM at every boot)\n")
	}
	if p.CloudConfig != "" {
		fmt.Fprintf(&b, "Cloud-config: %s -> /%s\n", p.CloudConfig, CloudConfigPath)
	} else {
		fmt.Fprintf(&b, "Cloud-config: none\n")
	}
	fmt.Fprintf(&b, "Kernel command line: %s\n", p.Cmdline)
	return b.String()
}

func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
