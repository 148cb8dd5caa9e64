package install

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestKernelCmdline(t *testing.T) {
	tests := []struct {
		platform Platform
		extra    string
		whole    bool
		want     string
	}{
		{Generic, "", false, "rancher.state.dev=LABEL=RANCHER_STATE rancher.state.wait console=tty0 console=ttyS0,115200n8 berth.image=state panic=10 cryptomgr.notests"},
		{Amazon, "", false, "rancher.state.dev=LABEL=RANCHER_STATE rancher.state.wait rancher.cloud_init.datasources=[ec2] console=ttyS0,115200n8 berth.image=state panic=10 cryptomgr.notests"},
		{GCE, " rancher.debug ", false, "rancher.state.dev=LABEL=RANCHER_STATE rancher.state.wait rancher.cloud_init.datasources=[gce] console=ttyS0,115200n8 berth.image=state panic=10 cryptomgr.notests rancher.debug"},
		{OpenStack, "", false, "rancher.state.dev=LABEL=RANCHER_STATE rancher.state.wait rancher.cloud_init.datasources=[configdrive,openstack] console=tty0 console=ttyS0,115200n8 berth.image=state panic=10 cryptomgr.notests"},
		// An initrd that holds the system image: unpacked into a ramfs.
		{Generic, "", true, "rancher.state.dev=LABEL=RANCHER_STATE rancher.state.wait console=tty0 console=ttyS0,115200n8 rootfstype=ramfs panic=10 cryptomgr.notests"},
	}
	for _, tt := range tests {
		t.Run(string(tt.platform), func(t *testing.T) {
			if diff := cmp.Diff(tt.want, KernelCmdline(tt.platform, tt.extra, tt.whole)); diff != "" {
				t.Errorf("KernelCmdline(%s) (-want +got):\n%s", tt.platform, diff)
			}
		})
	}
}

func TestParsePlatform(t *testing.T) {
	for _, s := range []string{"", "generic", "amazon", "gce", "openstack"} {
		if _, err := ParsePlatform(s); err != nil {
			t.Errorf("ParsePlatform(%q): %v", s, err)
		}
	}
	if _, err := ParsePlatform("azure"); err == nil || !strings.Contains(err.Error(), `"azure"`) {
		t.Errorf("ParsePlatform(azure) = %v, want an error naming it", err)
	}
}

func TestPlanLayout(t *testing.T) {
	tests := []struct {
		name      string
		size      int64
		wantErr   bool
		stateLast uint64
	}{
		{"too small", 100 << 20, true, 0},
		{"minimum", MinDiskBytes, false, MinDiskBytes/512 - 2048 - 1},
		{"1 GiB", 1 << 30, false, (1<<30)/512 - 2048 - 1},
		{"odd size", 1<<30 + 12345*512, false, 2109439}, // 2109497 sectors, last usable 2109463, rounded down to 1 MiB
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := PlanLayout(tt.size, "seed")
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "too small") {
					t.Fatalf("PlanLayout(%d) = %v, want a too-small error", tt.size, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			type span struct {
				Name       string
				Start, End uint64
			}
			var got []span
			for _, p := range l.Partitions {
				got = append(got, span{p.Name, p.Start, p.End})
				if p.Start%2048 != 0 {
					t.Errorf("partition %d starts at sector %d, not 1 MiB aligned", p.Number, p.Start)
				}
			}
			want := []span{{"BIOS boot", 2048, 4095}, {"EFI system", 4096, 69631}, {StateLabel, 69632, tt.stateLast}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("layout (-want +got):\n%s", diff)
			}
			if last := uint64(tt.size)/512 - 34; l.Part(PartState).End > last {
				t.Errorf("state ends at %d, past the last usable sector %d", l.Part(PartState).End, last)
			}
		})
	}
}

func TestPlanSeed(t *testing.T) {
	opts := []Option{WithKernel("k"), WithInitrd("i"), WithSeed("s"), WithEpoch(time.Unix(1, 0))}
	a, err := NewPlan("/dev/x", 1<<30, opts...)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewPlan("/dev/x", 1<<30, opts...)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different plans (-a +b):\n%s", diff)
	}
	c, _ := NewPlan("/dev/x", 1<<30, WithKernel("k"), WithInitrd("i"))
	d, _ := NewPlan("/dev/x", 1<<30, WithKernel("k"), WithInitrd("i"))
	if c.StateUUID == d.StateUUID || c.Layout.DiskGUID == d.Layout.DiskGUID {
		t.Errorf("two unseeded plans share UUIDs: %s %s", c.StateUUID, c.Layout.DiskGUID)
	}
	if _, err := NewPlan("/dev/x", 1<<30, WithKernel("k")); err == nil {
		t.Error("NewPlan without an initrd: no error")
	}
	if _, err := NewPlan("/dev/x", 1<<30, WithKernel("k"), WithInitrd("i"), WithPlatform("azure")); err == nil {
		t.Error("NewPlan with an unknown platform: no error")
	}
}

func TestPlanString(t *testing.T) {
	p, err := NewPlan("/dev/vda", 8<<30, WithKernel("/k"), WithInitrd("/i"), WithSystemImage("/sys.sqfs"), WithCloudConfig("/cc.yml"), WithPlatform(Amazon), WithSeed("s"))
	if err != nil {
		t.Fatal(err)
	}
	s := p.String()
	for _, want := range []string{
		"Install Berth (amazon) to /dev/vda (8 GiB). Everything on /dev/vda will be lost.",
		"1  1 MiB   1 MiB    BIOS boot",
		"2  2 MiB   32 MiB   EFI system",
		"3  34 MiB  8.0 GiB  RANCHER_STATE",
		"RANCHER_STATE  ext4 RANCHER_STATE: /boot/vmlinuz, /boot/initrd, /boot/berth/system.sqfs, state",
		"System image: /sys.sqfs -> /boot/berth/system.sqfs",
		"Cloud-config: /cc.yml -> /var/lib/rancher/conf/cloud-config.yml",
		"Kernel command line: rancher.state.dev=LABEL=RANCHER_STATE rancher.state.wait rancher.cloud_init.datasources=[ec2] console=ttyS0,115200n8 berth.image=state panic=10 cryptomgr.notests",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("plan text lacks %q:\n%s", want, s)
		}
	}
	// Without a system image, the initrd holds it and is unpacked into
	// a ramfs at every boot.
	w, err := NewPlan("/dev/vda", 8<<30, WithKernel("/k"), WithInitrd("/whole"))
	if err != nil {
		t.Fatal(err)
	}
	if s := w.String(); !strings.Contains(s, "System image: inside the initrd") || !strings.Contains(w.Cmdline, " rootfstype=ramfs ") || strings.Contains(w.Cmdline, "berth.image") {
		t.Errorf("plan of a whole initrd: cmdline %q, text:\n%s", w.Cmdline, s)
	}
}

func TestRefusedError(t *testing.T) {
	err := error(&RefusedError{Device: "/dev/vda", Reason: "is mounted at /mnt"})
	if !errors.Is(err, ErrRefused) {
		t.Error("RefusedError is not ErrRefused")
	}
	if want := "/dev/vda is mounted at /mnt; refusing to install over it (use -f to force)"; err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
}
