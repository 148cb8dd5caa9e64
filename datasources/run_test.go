package datasources

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/datasources/source"
)

// stub is a scripted source.
type stub struct {
	name     string
	needs    source.Needs
	delay    time.Duration
	err      error
	hang     bool // wait for ctx
	deaf     bool // ignore ctx entirely (a buggy source)
	instance string
}

func (s *stub) Name() string        { return s.name }
func (s *stub) Needs() source.Needs { return s.needs }
func (s *stub) Fetch(ctx context.Context) (*source.Result, error) {
	if s.deaf {
		time.Sleep(time.Hour)
	}
	if s.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
	}
	if s.err != nil {
		return nil, s.err
	}
	id := s.instance
	if id == "" {
		id = "i-" + s.name
	}
	return &source.Result{UserData: []byte("#cloud-config\nhostname: " + s.name + "\n"), Meta: cloudinit.Metadata{InstanceID: id}}, nil
}

func outcomes(d *Decision) map[string]string {
	m := map[string]string{}
	for _, r := range d.Sources {
		m[r.Name] = r.Outcome
	}
	return m
}

func TestRunPriorityAndBudget(t *testing.T) {
	absent := fmt.Errorf("gone: %w", source.ErrNotFound)
	tests := []struct {
		name    string
		budget  time.Duration
		srcTO   time.Duration
		srcs    []source.Datasource
		chosen  string
		want    map[string]string
		maxTook time.Duration
		minTook time.Duration
	}{
		{
			name: "higher source wins though a lower one answers first",
			srcs: []source.Datasource{
				&stub{name: "a", needs: source.Network, delay: 150 * time.Millisecond},
				&stub{name: "b", needs: source.Local},
			},
			chosen:  "a",
			want:    map[string]string{"a": Used, "b": Outranked},
			minTook: 150 * time.Millisecond,
			maxTook: time.Second,
		},
		{
			name: "lower source used once the higher one is absent",
			srcs: []source.Datasource{
				&stub{name: "a", needs: source.Network, delay: 50 * time.Millisecond, err: absent},
				&stub{name: "b", needs: source.Local},
				&stub{name: "c", needs: source.Local},
			},
			chosen:  "b",
			want:    map[string]string{"a": Absent, "b": Used, "c": Outranked},
			maxTook: time.Second,
		},
		{
			name: "an error is not an answer",
			srcs: []source.Datasource{
				&stub{name: "a", needs: source.Network, err: errors.New("boom")},
				&stub{name: "b", needs: source.Local, delay: 20 * time.Millisecond},
			},
			chosen: "b",
			want:   map[string]string{"a": Failed, "b": Used},
		},
		{
			name:   "every source hangs: the budget ends the run",
			budget: 300 * time.Millisecond,
			srcs: []source.Datasource{
				&stub{name: "a", needs: source.Network, hang: true},
				&stub{name: "b", needs: source.Network, hang: true},
			},
			want:    map[string]string{"a": TimedOut, "b": TimedOut},
			minTook: 300 * time.Millisecond,
			maxTook: 300*time.Millisecond + 2*grace,
		},
		{
			name:   "a source that ignores its context cannot hold the run",
			budget: 200 * time.Millisecond,
			srcs: []source.Datasource{
				&stub{name: "a", needs: source.Network, deaf: true},
			},
			want:    map[string]string{"a": TimedOut},
			maxTook: 200*time.Millisecond + 2*grace,
		},
		{
			name:   "higher source hangs past the budget: the lower answer is used",
			budget: 300 * time.Millisecond,
			srcs: []source.Datasource{
				&stub{name: "a", needs: source.Network, hang: true},
				&stub{name: "b", needs: source.Local},
			},
			chosen:  "b",
			want:    map[string]string{"a": TimedOut, "b": Used},
			minTook: 300 * time.Millisecond,
			maxTook: 300*time.Millisecond + 2*grace,
		},
		{
			name:  "own deadline: a hanging source gives up before the budget",
			srcTO: 100 * time.Millisecond,
			srcs: []source.Datasource{
				&stub{name: "a", needs: source.Network, hang: true},
				&stub{name: "b", needs: source.Local, hang: true},
				&stub{name: "c", needs: source.Local, delay: 10 * time.Millisecond},
			},
			chosen:  "c",
			want:    map[string]string{"a": TimedOut, "b": TimedOut, "c": Used},
			maxTook: time.Second,
		},
		{
			name: "the winner stops slower lower sources",
			srcs: []source.Datasource{
				&stub{name: "a", needs: source.Local},
				&stub{name: "b", needs: source.Network, hang: true},
			},
			chosen:  "a",
			want:    map[string]string{"a": Used, "b": Outranked},
			maxTook: 500 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := []Option{WithSources(tt.srcs...), WithPlatform(Platform{})}
			if tt.budget > 0 {
				opts = append(opts, WithBudget(tt.budget))
			}
			if tt.srcTO > 0 {
				opts = append(opts, WithSourceTimeout(tt.srcTO))
			}
			start := time.Now()
			d, err := Run(context.Background(), nil, opts...)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
			if d.Chosen != tt.chosen {
				t.Errorf("Chosen = %q, want %q\n%s", d.Chosen, tt.chosen, d.Explain())
			}
			if diff := cmp.Diff(tt.want, outcomes(d)); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s\n%s", diff, d.Explain())
			}
			if tt.maxTook > 0 && took > tt.maxTook {
				t.Errorf("Run took %s, want at most %s", took, tt.maxTook)
			}
			if took < tt.minTook {
				t.Errorf("Run took %s, want at least %s", took, tt.minTook)
			}
			if tt.chosen != "" && (d.Result == nil || d.InstanceID != "i-"+tt.chosen) {
				t.Errorf("Result = %+v, InstanceID = %q, want the answer of %s", d.Result, d.InstanceID, tt.chosen)
			}
			for _, r := range d.Sources {
				if (r.Outcome == Failed || r.Outcome == Absent || r.Outcome == TimedOut) && r.Error == "" {
					t.Errorf("source %s: outcome %s without an error text", r.Name, r.Outcome)
				}
			}
		})
	}
}

func TestRunSkipsImplausibleNetworkSources(t *testing.T) {
	gce := Platform{Cloud: "gce", CloudWhy: `DMI sys_vendor "Google"`}
	tests := []struct {
		name string
		p    Platform
		srcs []string
		want map[string]string
	}{
		{"other cloud's source skipped", gce, []string{"ec2", "openstack", "gce"},
			map[string]string{"ec2": Skipped, "openstack": Skipped, "gce": Used}},
		{"only source listed is tried", gce, []string{"ec2"}, map[string]string{"ec2": Used}},
		{"unknown platform tries all", Platform{SysVendor: "QEMU"}, []string{"ec2", "gce"},
			map[string]string{"ec2": Used, "gce": Outranked}},
		{"ec2 is plausible on openstack", Platform{Cloud: "openstack"}, []string{"ec2", "gce"},
			map[string]string{"ec2": Used, "gce": Skipped}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var srcs []source.Datasource
			for _, n := range tt.srcs {
				srcs = append(srcs, &stub{name: n, needs: source.Network})
			}
			d, err := Run(context.Background(), nil, WithSources(srcs...), WithPlatform(tt.p))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, outcomes(d)); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s\n%s", diff, d.Explain())
			}
			for _, r := range d.Sources {
				if r.Outcome == Skipped && !strings.Contains(r.Why, "gce") {
					t.Errorf("%s skipped, why = %q: want it to name the platform", r.Name, r.Why)
				}
			}
		})
	}
}

func TestExpandAndSources(t *testing.T) {
	got := Expand([]string{"configdrive:/dev/sr0", "*", "ec2"}, Platform{Cloud: "gce"})
	want := []string{"configdrive:/dev/sr0", "cmdline", "configdrive", "gce", "ec2", "openstack"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Expand (-want +got):\n%s", diff)
	}
	srcs, err := Sources([]string{"ec2", "gce", "openstack", "configdrive:/dev/sr0", "cmdline", "url:http://192.0.2.1/ud", "file:/ud"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range srcs {
		names = append(names, s.Name())
	}
	if diff := cmp.Diff([]string{"ec2", "gce", "openstack", "configdrive:/dev/sr0", "cmdline", "url:http://192.0.2.1/ud", "file:/ud"}, names); diff != "" {
		t.Errorf("Sources names (-want +got):\n%s", diff)
	}
	if _, err := Sources([]string{"digitalocean"}); err == nil || !strings.Contains(err.Error(), "digitalocean") {
		t.Errorf("Sources([digitalocean]) = %v, want an error naming it", err)
	}
}

func TestNeedsNetworkAndConfigOptions(t *testing.T) {
	for _, tt := range []struct {
		list []string
		want bool
	}{
		{[]string{"configdrive:/dev/sr0", "file:/x"}, false},
		{[]string{"configdrive", "ec2"}, true},
		{[]string{"*"}, true},
		{[]string{"url:http://192.0.2.1/"}, true},
	} {
		if got := NeedsNetwork(tt.list); got != tt.want {
			t.Errorf("NeedsNetwork(%q) = %v, want %v", tt.list, got, tt.want)
		}
	}
	no := false
	c := newConfig(ConfigOptions(cloudinit.CloudInit{Timeout: 7, EC2: cloudinit.EC2{IMDSv1: &no}}))
	if c.budget != 7*time.Second || c.imdsv1 {
		t.Errorf("ConfigOptions: budget %s imdsv1 %v, want 7s false", c.budget, c.imdsv1)
	}
}

func TestDecisionRecordContent(t *testing.T) {
	srcs := []source.Datasource{
		&stub{name: "ec2", needs: source.Network, err: errors.New("HTTP 403")},
		&stub{name: "gce", needs: source.Network},
		&stub{name: "configdrive", needs: source.Local},
	}
	d, err := Run(context.Background(), nil, WithSources(srcs...), WithPlatform(Platform{Cloud: "ec2", CloudWhy: "DMI"}))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := Save(root, d); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDecision(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Name: "ec2", Needs: "network", Plausible: true, Outcome: Failed, Error: "HTTP 403"},
		{Name: "gce", Needs: "network", Plausible: false, Outcome: Skipped},
		{Name: "configdrive", Needs: "local", Plausible: true, Outcome: Used},
	}
	opt := cmp.FilterPath(func(p cmp.Path) bool {
		f := p.Last().String()
		return f == ".Start" || f == ".End" || f == ".Took" || f == ".Why"
	}, cmp.Ignore())
	if diff := cmp.Diff(want, got.Sources, opt); diff != "" {
		t.Errorf("saved record (-want +got):\n%s", diff)
	}
	for _, r := range got.Sources {
		if r.Why == "" {
			t.Errorf("%s: no reason recorded", r.Name)
		}
		if r.Plausible && (r.Start.IsZero() || r.End.Before(r.Start)) {
			t.Errorf("%s: start %v end %v", r.Name, r.Start, r.End)
		}
	}
	if got.Chosen != "configdrive" || got.InstanceID != "i-configdrive" {
		t.Errorf("chosen %q instance %q", got.Chosen, got.InstanceID)
	}
	ex := got.Explain()
	for _, w := range []string{"platform: ec2", "gce", "skipped", "HTTP 403", "used: configdrive"} {
		if !strings.Contains(ex, w) {
			t.Errorf("Explain lacks %q:\n%s", w, ex)
		}
	}
}
