package datasources

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthos/berth/datasources/fake"
)

// servers starts the three fakes with the given faults.
func servers(t *testing.T, ec2F, gceF, osF fake.Faults) (ec2, gce, ost string) {
	t.Helper()
	e := &fake.EC2{UserData: []byte("#cloud-config\nhostname: e\n"), Meta: fake.EC2Meta(), RequireToken: true}
	e.SetFaults(ec2F)
	gm := fake.GCEMeta()
	gm["instance/attributes/user-data"] = "#cloud-config\nhostname: g\n"
	g := &fake.GCE{Meta: gm}
	g.SetFaults(gceF)
	o := &fake.OpenStack{Files: fake.OpenStackFiles([]byte("#cloud-config\nhostname: o\n"))}
	o.SetFaults(osF)
	se, sg, so := httptest.NewServer(e), httptest.NewServer(g), httptest.NewServer(o)
	t.Cleanup(func() { se.Close(); sg.Close(); so.Close() })
	return se.URL, sg.URL, so.URL
}

// TestRunWithRealSources runs the real ec2, gce and openstack sources
// against their fakes: a slow higher source still wins, and hanging
// sources cannot hold the run past its budget.
func TestRunWithRealSources(t *testing.T) {
	tests := []struct {
		name             string
		ec2F, gceF, osF  fake.Faults
		budget           time.Duration
		chosen           string
		want             map[string]string
		minTook, maxTook time.Duration
	}{
		{
			name: "slow ec2 first in the list beats fast gce",
			// The delay is per request; ec2 makes about fifteen.
			ec2F:    fake.Faults{Delay: 20 * time.Millisecond},
			budget:  5 * time.Second,
			chosen:  "ec2",
			want:    map[string]string{"ec2": Used, "gce": Outranked, "openstack": Outranked},
			minTook: 100 * time.Millisecond,
			maxTook: 2 * time.Second,
		},
		{
			name:    "ec2 failing with 500s until its deadline: gce is used",
			ec2F:    fake.Faults{Fail5xx: 1 << 30},
			budget:  400 * time.Millisecond,
			chosen:  "gce",
			want:    map[string]string{"ec2": TimedOut, "gce": Used, "openstack": Outranked},
			maxTook: 400*time.Millisecond + 2*grace,
		},
		{
			name:    "every service hangs: the run ends at its budget",
			ec2F:    fake.Faults{Hang: true},
			gceF:    fake.Faults{Hang: true},
			osF:     fake.Faults{Hang: true},
			budget:  300 * time.Millisecond,
			want:    map[string]string{"ec2": TimedOut, "gce": TimedOut, "openstack": TimedOut},
			minTook: 300 * time.Millisecond,
			maxTook: 300*time.Millisecond + 2*grace,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ec2, gce, ost := servers(t, tt.ec2F, tt.gceF, tt.osF)
			start := time.Now()
			d, err := Run(context.Background(), []string{"ec2", "gce", "openstack"}, WithRoot(t.TempDir()),
				WithBudget(tt.budget), WithEndpoint("ec2", ec2), WithEndpoint("gce", gce), WithEndpoint("openstack", ost))
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if d.Chosen != tt.chosen {
				t.Errorf("Chosen = %q, want %q\n%s", d.Chosen, tt.chosen, d.Explain())
			}
			if diff := cmp.Diff(tt.want, outcomes(d)); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s\n%s", diff, d.Explain())
			}
			if took < tt.minTook || took > tt.maxTook {
				t.Errorf("Run took %s, want between %s and %s", took, tt.minTook, tt.maxTook)
			}
		})
	}
}
