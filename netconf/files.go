package netconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthos/berth/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// StatusFile is where Apply records leases and DNS for `ros netconf status`,
// relative to the root.
const StatusFile = "/run/berth/netconf.json"

// Status is the saved record of the last Apply and renewals.
type Status struct {
	Updated     time.Time `json:"updated"`
	Plan        *Plan     `json:"plan"`
	Leases      []Lease   `json:"leases,omitempty"`
	Nameservers []string  `json:"nameservers,omitempty"`
	Search      []string  `json:"search,omitempty"`
	Hostname    string    `json:"hostname,omitempty"`
}

// resolvers merges configured DNS with DHCP-learned DNS: configured
// servers first and never displaced, then each lease's in link order,
// without duplicates.
func resolvers(cfg DNSConfig, leases []*Lease) (ns, search []string) {
	seen := map[string]bool{}
	addNS := func(s string) {
		if !seen[s] {
			seen[s] = true
			ns = append(ns, s)
		}
	}
	for _, s := range cfg.Nameservers {
		addNS(s)
	}
	for _, l := range leases {
		for _, a := range l.DNS {
			addNS(a.String())
		}
	}
	seenS := map[string]bool{}
	addS := func(s string) {
		if s != "" && !seenS[s] {
			seenS[s] = true
			search = append(search, s)
		}
	}
	for _, s := range cfg.Search {
		addS(s)
	}
	for _, l := range leases {
		for _, s := range l.Search {
			addS(s)
		}
	}
	return ns, search
}

// resolvConf renders /etc/resolv.conf.
func resolvConf(ns, search []string) []byte {
	var b strings.Builder
	b.WriteString("# Written by Berth netconf: rancher.network.dns first, then DHCP.\n")
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	for _, n := range ns {
		b.WriteString("nameserver " + n + "\n")
	}
	return []byte(b.String())
}

func writeResolvConf(root string, ns, search []string) error {
	p := filepath.Join(root, "etc/resolv.conf")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	// A symlink (to a systemd-style stub, say) would be followed by the
	// rename; replace the link itself.
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		os.Remove(p)
	}
	if err := writeIfChanged(p, resolvConf(ns, search)); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}

// hostsFile is /etc/hosts with the hostname on 127.0.1.1: old's lines
// (a write_files /etc/hosts, the image's localhost lines) are kept, all
// but an earlier 127.0.1.1 line, which the new one replaces. Without an
// old file it starts from the localhost lines.
func hostsFile(old []byte, host string) []byte {
	short, _, _ := strings.Cut(host, ".")
	names := host
	if short != host {
		names += " " + short
	}
	if len(bytes.TrimSpace(old)) == 0 {
		old = []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	}
	var b bytes.Buffer
	for _, l := range strings.SplitAfter(string(old), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "127.0.1.1" || l == "" {
			continue
		}
		b.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			b.WriteByte('\n')
		}
	}
	b.WriteString("127.0.1.1\t" + names + "\n")
	return b.Bytes()
}

// writeHostname writes /etc/hostname, the hostname's line of /etc/hosts
// and, on the real root,
// sets the kernel's hostname.
func writeHostname(root, host string) error {
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		return fmt.Errorf("write hostname: %w", err)
	}
	if err := writeIfChanged(filepath.Join(root, "etc/hostname"), []byte(host+"\n")); err != nil {
		return fmt.Errorf("write hostname: %w", err)
	}
	hosts := filepath.Join(root, "etc/hosts")
	old, err := os.ReadFile(hosts)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("write hosts: %w", err)
	}
	if err := writeIfChanged(hosts, hostsFile(old, host)); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	if isRootSlash(root) {
		if err := unix.Sethostname([]byte(host)); err != nil {
			return fmt.Errorf("set hostname %q: %w", host, err)
		}
	}
	return nil
}

// writeIfChanged writes data atomically to p unless p already holds it:
// an unchanged apply costs no fsync.
func writeIfChanged(p string, data []byte) error {
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return atomicfile.Write(p, data, 0o644)
}

// saveStatus records the state for `ros netconf status`, unless nothing
// but the time changed since this State last saved it.
func (s *State) saveStatus() error {
	st := Status{Plan: s.plan, Leases: s.Leases()}
	s.mu.Lock()
	st.Nameservers, st.Search, st.Hostname = s.dns, s.search, s.hostname
	s.mu.Unlock()
	same, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode network status: %w", err)
	}
	s.mu.Lock()
	unchanged := bytes.Equal(same, s.saved)
	s.mu.Unlock()
	if unchanged {
		return nil
	}
	st.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode network status: %w", err)
	}
	p := filepath.Join(s.o.root, StatusFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("save network status: %w", err)
	}
	if err := atomicfile.Write(p, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save network status: %w", err)
	}
	s.mu.Lock()
	s.saved = same
	s.mu.Unlock()
	return nil
}

// LoadStatus reads the status the last Apply saved under root. A missing
// file gives an empty Status and no error.
func LoadStatus(root string) (*Status, error) {
	b, err := os.ReadFile(filepath.Join(root, StatusFile))
	if os.IsNotExist(err) {
		return &Status{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read network status: %w", err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse %s: %w", StatusFile, err)
	}
	return &st, nil
}
