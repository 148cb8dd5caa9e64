package datasources

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/berthos/berth/datasources/fake"
)

// driveMachine is a fake root with only a config drive (sr0), and a
// closed local port standing in for metadata services that refuse
// connections.
func driveMachine(tb testing.TB) (root, closed string) {
	tb.Helper()
	root = tb.TempDir()
	img := filepath.Join(root, "cd.iso")
	if err := fake.BuildISO(img, "config-2", fake.DriveFiles([]byte("#cloud-config\n"))); err != nil {
		tb.Fatal(err)
	}
	for _, d := range []string{"sys/class/block/sr0", "dev", "proc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Symlink(img, filepath.Join(root, "dev/sr0")); err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	closed = "http://" + l.Addr().String()
	l.Close()
	return root, closed
}

func runOnce(tb testing.TB, root, closed string, list []string) time.Duration {
	start := time.Now()
	d, err := Run(context.Background(), list, WithRoot(root), WithBudget(10*time.Second),
		WithEndpoint("ec2", closed), WithEndpoint("gce", closed), WithEndpoint("openstack", closed))
	took := time.Since(start)
	if err != nil {
		tb.Fatal(err)
	}
	if d.Chosen != "configdrive" {
		tb.Fatalf("Chosen = %q, want configdrive\n%s", d.Chosen, d.Explain())
	}
	return took
}

var (
	benchAll   = []string{"ec2", "gce", "openstack", "configdrive"}
	benchDrive = []string{"configdrive"}
)

// BenchmarkRun: `go test -run x -bench Run ./datasources/`.
func BenchmarkRun(b *testing.B) {
	root, closed := driveMachine(b)
	for _, bc := range []struct {
		name string
		list []string
	}{{"configdrive-only", benchDrive}, {"ec2-gce-openstack-configdrive", benchAll}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				runOnce(b, root, closed, bc.list)
			}
		})
	}
}

// TestAbsentNetworkSourcesCostLittle is the bound: listing the
// three network sources before the config drive, when they refuse
// connections, costs no more than 100 ms over the drive alone.
func TestAbsentNetworkSourcesCostLittle(t *testing.T) {
	root, closed := driveMachine(t)
	median := func(list []string) time.Duration {
		var ds []time.Duration
		for range 5 {
			ds = append(ds, runOnce(t, root, closed, list))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	drive, all := median(benchDrive), median(benchAll)
	t.Logf("median run: configdrive alone %s, ec2+gce+openstack+configdrive %s", drive, all)
	if all-drive > 100*time.Millisecond {
		t.Errorf("absent network sources cost %s over the drive alone, want at most 100ms", all-drive)
	}
}
