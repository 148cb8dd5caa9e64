//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthos/berth/platforms/install"
)

// ReadyLine is what PID 1 prints when the boot is complete
// (sysinit.PID1ReadyLine).
const ReadyLine = "Berth is up"

// Accel says which qemu accelerator to use: KVM only when /dev/kvm opens
// and the CPU has vmx or svm (MACHINE.md: /dev/kvm exists but does not
// work on the build machines), TCG otherwise.
func Accel() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	cpu, _ := os.ReadFile("/proc/cpuinfo")
	if regexp.MustCompile(`\b(vmx|svm)\b`).Match(cpu) {
		return "kvm"
	}
	return "tcg"
}

// TCGCPU is the CPU qemu emulates under TCG: every feature TCG has, but
// without ERMS and FSRM. With them the guest's kernel and glibc copy and
// clear memory with `rep movsb`/`rep stosb`, which TCG runs a byte per
// iteration; without them they use 8-byte moves. User Docker answers
// about 3.5 s sooner (41.4 and 41.6 s against 37.8, 38.0 and 38.6 on a
// 1 GiB cmdline boot), and the kernel reaches /init 1 s sooner, as the
// 82 MB initrd unpacks faster. Under KVM the guest gets the host's CPU.
const TCGCPU = "max,-erms,-fsrm"

// QemuCPU is qemu's -cpu for accel: the host's under KVM, TCGCPU under TCG.
func QemuCPU(accel string) string {
	if accel == "kvm" {
		return "host"
	}
	return TCGCPU
}

// InstalledAppend is what the tests' installed disks and cloud images add
// to their kernel command line: the console login, no_timer_check (a
// loaded TCG host can fail the kernel's IO-APIC timer check, "IO-APIC +
// timer doesn't work!"), and under TCG TCGCmdline.
func InstalledAppend() string {
	return strings.TrimSpace("rancher.autologin=ttyS0 no_timer_check " + TCGCmdline(Accel()))
}

// TCGCmdline is what a boot under TCG adds to the kernel command line:
// norandmaps. TCG keeps its translation of guest code by virtual address,
// and with address space randomisation each new process maps its
// libraries (and a PIE binary itself) somewhere else, so every exec
// translates them again: each of User Docker's 69 iptables runs, each
// runc. Without it User Docker answers about 6 s sooner (a median of 30.7
// s against 36.4 over five 1 GiB cmdline boots each). Only the emulated
// test boots do without randomisation: the image's own command line, and
// any boot under KVM, keep it.
func TCGCmdline(accel string) string {
	if accel == "tcg" {
		return "norandmaps"
	}
	return ""
}

// Image is the built image the tests boot.
type Image struct {
	Dir string // out/image: vmlinux, vmlinuz, initrd, berth.iso
}

// VMConfig is one boot.
type VMConfig struct {
	Cmdline string   // appended to the base command line
	MemMB   int      // default 1024
	Net     string   // extra -netdev user options (guestfwd=..., net=...)
	Args    []string // extra qemu arguments (drives, -smbios)
	// Disk is a raw disk image attached as virtio (vda).
	Disk string
	// NICMAC sets the first NIC's MAC address (qemu's default otherwise).
	NICMAC string
	// ISO, when set, boots as berth.iso does: the small initrd, and this
	// ISO as a CD-ROM, from which PID 1 mounts the system image.
	ISO string
	// SecondNICMAC adds a second NIC with this MAC on the same network:
	// a qemu hub joins both NICs to the one user network, as two ports of
	// a bond are cabled to one switch.
	SecondNICMAC string
}

// VM is a running qemu.
type VM struct {
	t       testing.TB
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	SSHPort int
	// HTTPPort on the host reaches the guest's port 8080 (hostfwd), for
	// the published-port check.
	HTTPPort int
	Started  time.Time
	monitor  string
	accel    string // "kvm" or "tcg"

	mu    sync.Mutex
	lines []Line
	cond  *sync.Cond
	done  chan struct{}
	log   *os.File
	// serialNo numbers console commands so their output can be found.
	serialNo int
}

// Line is one console line and when it arrived (since qemu started).
type Line struct {
	At   time.Duration
	Text string
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Boot starts qemu with the image's PVH vmlinux and initrd, the serial
// console on a pipe (logged to a file in t's temp dir), SSH forwarded to
// a free local port, and stops it when the test ends.
func Boot(t testing.TB, img Image, c VMConfig) *VM {
	t.Helper()
	if c.MemMB == 0 {
		c.MemMB = 1024
	}
	vm, args := newVM(t, c.MemMB)
	netdev := fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22,hostfwd=tcp:127.0.0.1:%d-:8080", vm.SSHPort, vm.HTTPPort)
	if c.Net != "" {
		netdev += "," + c.Net
	}
	initrd := filepath.Join(img.Dir, "initrd")
	base := "console=ttyS0 panic=-1 rancher.autologin=ttyS0 " + install.BootArgs + " "
	if a := TCGCmdline(vm.accel); a != "" {
		base += a + " "
	}
	if c.ISO == "" {
		// What installed disks and cloud images have.
		base += install.WholeInitrdArg + " "
	} else {
		initrd = filepath.Join(img.Dir, "initrd.small")
		args = append(args, "-drive", "file="+c.ISO+",media=cdrom,readonly=on")
	}
	args = append(args,
		"-kernel", filepath.Join(img.Dir, "vmlinux"), "-initrd", initrd,
		"-append", strings.TrimSpace(base+c.Cmdline),
	)
	if c.SecondNICMAC == "" {
		args = append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"+macOpt(c.NICMAC))
	} else {
		args = append(args, "-netdev", netdev,
			"-netdev", "hubport,id=up,hubid=0,netdev=n0",
			"-netdev", "hubport,id=p0,hubid=0", "-device", "virtio-net-pci,netdev=p0"+macOpt(c.NICMAC),
			"-netdev", "hubport,id=p1,hubid=0", "-device", "virtio-net-pci,netdev=p1"+macOpt(c.SecondNICMAC))
	}
	if c.Disk != "" {
		args = append(args, "-drive", "file="+c.Disk+",if=virtio,format=raw")
	}
	vm.start(append(args, c.Args...))
	return vm
}

// newVM makes a VM with its SSH port and monitor socket, and returns the
// qemu arguments every boot shares: accelerator, CPU, memory, serial
// console on stdio, monitor, RNG. The caller adds how the guest boots and
// its network, then calls start.
func newVM(t testing.TB, memMB int) (*VM, []string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	vm := &VM{t: t, SSHPort: freePort(t), HTTPPort: freePort(t), done: make(chan struct{})}
	vm.cond = sync.NewCond(&vm.mu)
	vm.monitor = filepath.Join(t.TempDir(), "monitor.sock")
	vm.accel = Accel()
	return vm, []string{
		"-accel", vm.accel, "-cpu", QemuCPU(vm.accel), "-smp", "2", "-m", fmt.Sprint(memMB),
		"-nodefaults", "-display", "none", "-monitor", "unix:" + vm.monitor + ",server,nowait", "-serial", "stdio", "-no-reboot",
		"-device", "virtio-rng-pci",
	}
}

// start runs qemu with args, copies its console into the VM's log, and
// kills it when the test ends (printing the console's tail on failure).
func (vm *VM) start(args []string) {
	t := vm.t
	t.Helper()
	vm.cmd = exec.Command("qemu-system-x86_64", args...)
	var err error
	if vm.stdin, err = vm.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := vm.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	vm.cmd.Stderr = vm.cmd.Stdout
	if vm.log, err = os.Create(filepath.Join(t.TempDir(), "console.log")); err != nil {
		t.Fatal(err)
	}
	t.Logf("qemu (%s): %s", vm.accel, strings.Join(vm.cmd.Args, " "))
	vm.Started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go vm.read(out)
	t.Cleanup(func() {
		vm.Kill()
		if t.Failed() {
			t.Logf("console (last 80 lines):\n%s", vm.Tail(80))
		}
	})
}

func macOpt(mac string) string {
	if mac == "" {
		return ""
	}
	return ",mac=" + mac
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

func (vm *VM) read(r io.Reader) {
	defer close(vm.done)
	br := bufio.NewReader(r)
	for {
		s, err := br.ReadString('\n')
		if s != "" {
			at := time.Since(vm.Started)
			s = ansi.ReplaceAllString(strings.TrimRight(s, "\r\n"), "")
			fmt.Fprintf(vm.log, "%9.3f %s\n", at.Seconds(), s)
			vm.mu.Lock()
			vm.lines = append(vm.lines, Line{at, s})
			vm.cond.Broadcast()
			vm.mu.Unlock()
		}
		if err != nil {
			vm.mu.Lock()
			vm.cond.Broadcast()
			vm.mu.Unlock()
			return
		}
	}
}

// Exited says whether qemu has ended.
func (vm *VM) Exited() bool {
	select {
	case <-vm.done:
		return true
	default:
		return false
	}
}

// WaitLine waits for a console line matching re after line index from,
// returning it and its index.
func (vm *VM) WaitLine(re *regexp.Regexp, from int, timeout time.Duration) (Line, int, error) {
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() {
		vm.mu.Lock()
		vm.cond.Broadcast()
		vm.mu.Unlock()
	})
	defer stop.Stop()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for i := from; ; {
		for ; i < len(vm.lines); i++ {
			if re.MatchString(vm.lines[i].Text) {
				return vm.lines[i], i, nil
			}
		}
		if vm.Exited() {
			return Line{}, i, fmt.Errorf("qemu exited before a line matched %q", re)
		}
		if time.Now().After(deadline) {
			return Line{}, i, fmt.Errorf("no console line matched %q within %s", re, timeout)
		}
		vm.cond.Wait()
	}
}

// WaitReady waits for PID 1's ready line and returns when it came.
func (vm *VM) WaitReady(timeout time.Duration) time.Duration {
	vm.t.Helper()
	l, _, err := vm.WaitLine(regexp.MustCompile(regexp.QuoteMeta(ReadyLine)), 0, timeout)
	if err != nil {
		vm.t.Fatalf("boot: %v", err)
	}
	// A boot can come up with part of its initrd left out (an archive the
	// kernel could not decode): the system image is then looked for on
	// the boot media instead. Every boot here must unpack the whole initrd.
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for _, k := range vm.lines {
		if strings.Contains(k.Text, "Initramfs unpacking failed") {
			vm.t.Errorf("boot: the kernel could not unpack the whole initrd: %s", k.Text)
		}
	}
	return l.At
}

// Console runs a shell command on the serial console (the autologin
// shell) and returns its output lines and exit code.
func (vm *VM) Console(cmd string, timeout time.Duration) (string, int, error) {
	vm.mu.Lock()
	vm.serialNo++
	n := vm.serialNo
	from := len(vm.lines)
	vm.mu.Unlock()
	begin, end := fmt.Sprintf("=B%d=", n), fmt.Sprintf("=E%d=", n)
	// The markers are built by the shell so the echoed command line does
	// not match them.
	line := fmt.Sprintf("echo =B%d\"=\"; %s; echo =E%d\"=\"$?\n", n, cmd, n)
	if _, err := io.WriteString(vm.stdin, line); err != nil {
		return "", -1, fmt.Errorf("console: %w", err)
	}
	_, bi, err := vm.WaitLine(regexp.MustCompile("^"+regexp.QuoteMeta(begin)+"$"), from, timeout)
	if err != nil {
		return "", -1, fmt.Errorf("console %q: %w", cmd, err)
	}
	l, ei, err := vm.WaitLine(regexp.MustCompile("^"+regexp.QuoteMeta(end)+`(\d+)$`), bi, timeout)
	if err != nil {
		return "", -1, fmt.Errorf("console %q: %w", cmd, err)
	}
	code := 0
	fmt.Sscanf(strings.TrimPrefix(l.Text, end), "%d", &code)
	vm.mu.Lock()
	var out []string
	kmsg := regexp.MustCompile(`^\[ *[0-9]+\.[0-9]+\] `)
	for _, x := range vm.lines[bi+1 : ei] {
		if !kmsg.MatchString(x.Text) {
			out = append(out, x.Text)
		}
	}
	vm.mu.Unlock()
	return strings.Join(out, "\n"), code, nil
}

// MustConsole is Console that fails the test on error or a non-zero exit.
func (vm *VM) MustConsole(cmd string) string {
	vm.t.Helper()
	out, code, err := vm.Console(cmd, 60*time.Second)
	if err != nil {
		vm.t.Fatal(err)
	}
	if code != 0 {
		vm.t.Fatalf("console %q: exit %d: %s", cmd, code, out)
	}
	return out
}

// Tail returns the last n console lines.
func (vm *VM) Tail(n int) string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	var b bytes.Buffer
	start := max(0, len(vm.lines)-n)
	for _, l := range vm.lines[start:] {
		fmt.Fprintf(&b, "%9.3f %s\n", l.At.Seconds(), l.Text)
	}
	return b.String()
}

// WaitExit waits for qemu to end by itself.
func (vm *VM) WaitExit(timeout time.Duration) error {
	select {
	case <-vm.done:
		_ = vm.cmd.Wait()
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("qemu still running after %s", timeout)
	}
}

// Kill ends qemu (by its pid) if it still runs.
func (vm *VM) Kill() {
	if !vm.Exited() && vm.cmd.Process != nil {
		_ = vm.cmd.Process.Kill()
		<-vm.done
		_ = vm.cmd.Wait()
	}
	vm.log.Close()
}

// Monitor sends one command to qemu's human monitor
// ("system_powerdown" presses the ACPI power button).
func (vm *VM) Monitor(cmd string) error {
	c, err := net.Dial("unix", vm.monitor)
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return fmt.Errorf("monitor %s: %w", cmd, err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, c)
	return nil
}

// SSH runs a command in the guest as rancher over the forwarded port with
// key, retrying the connection until timeout (the console service starts
// late in the boot).
func (vm *VM) SSH(ctx context.Context, key, command string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		cmd := exec.CommandContext(ctx, "ssh", "-i", key, "-p", fmt.Sprint(vm.SSHPort),
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "ConnectTimeout=10", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
			"rancher@127.0.0.1", command)
		out, err := cmd.CombinedOutput()
		if err == nil {
			return strings.TrimSpace(string(out)), nil
		}
		if _, ok := err.(*exec.ExitError); ok && cmd.ProcessState.ExitCode() != 255 {
			return strings.TrimSpace(string(out)), fmt.Errorf("ssh %q: %w: %s", command, err, out)
		}
		if time.Now().After(deadline) || vm.Exited() {
			return strings.TrimSpace(string(out)), fmt.Errorf("ssh %q: %w: %s", command, err, out)
		}
		time.Sleep(2 * time.Second)
	}
}
