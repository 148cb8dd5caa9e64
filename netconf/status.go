package netconf

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Report is the network as it is now: links, addresses and routes from
// the kernel; leases, DNS and hostname from the last Apply's record.
type Report struct {
	Links       []LinkStatus  `json:"links"`
	Routes      []RouteStatus `json:"routes"`
	Leases      []Lease       `json:"leases,omitempty"`
	Nameservers []string      `json:"nameservers,omitempty"`
	Search      []string      `json:"search,omitempty"`
	Hostname    string        `json:"hostname,omitempty"`
	Updated     time.Time     `json:"updated,omitzero"`
}

// LinkStatus is one link.
type LinkStatus struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	State     string   `json:"state"`
	MTU       int      `json:"mtu"`
	MAC       string   `json:"mac,omitempty"`
	Master    string   `json:"master,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
}

// RouteStatus is one route of the main table.
type RouteStatus struct {
	Dst    string `json:"dst"`
	Gw     string `json:"gw,omitempty"`
	Dev    string `json:"dev"`
	Proto  string `json:"proto"`
	Metric int    `json:"metric,omitempty"`
	OnLink bool   `json:"onlink,omitempty"`
}

// Inspect reads the current network (in the WithNetns namespace, if
// given) and the status saved under the WithRoot directory.
func Inspect(ctx context.Context, opts ...Option) (*Report, error) {
	o := newOptions(opts)
	h, err := o.handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ls, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	r := &Report{}
	for _, l := range ls {
		a := l.Attrs()
		st := LinkStatus{Name: a.Name, Kind: l.Type(), State: a.OperState.String(), MTU: a.MTU, MAC: a.HardwareAddr.String(), Master: names[a.MasterIndex]}
		if a.Flags&net.FlagUp == 0 {
			st.State = "down"
		}
		as, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", a.Name, err)
		}
		for _, ad := range as {
			st.Addresses = append(st.Addresses, prefixOf(ad.IPNet).String())
		}
		r.Links = append(r.Links, st)
	}
	rs, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, rt := range rs {
		if rt.Table != unix.RT_TABLE_MAIN && rt.Table != 0 {
			continue
		}
		dst := "default"
		if rt.Dst != nil {
			if ones, _ := rt.Dst.Mask.Size(); ones > 0 {
				dst = rt.Dst.String()
			}
		}
		rst := RouteStatus{Dst: dst, Dev: names[rt.LinkIndex], Proto: protoName(rt.Protocol), Metric: rt.Priority,
			OnLink: rt.Flags&int(netlink.FLAG_ONLINK) != 0}
		if rt.Gw != nil {
			rst.Gw = rt.Gw.String()
		}
		r.Routes = append(r.Routes, rst)
	}
	saved, err := LoadStatus(o.root)
	if err != nil {
		return nil, err
	}
	r.Leases, r.Updated, r.Hostname = saved.Leases, saved.Updated, saved.Hostname
	r.Nameservers, r.Search = readResolvConf(filepath.Join(o.root, "etc/resolv.conf"))
	if b, err := os.ReadFile(filepath.Join(o.root, "etc/hostname")); err == nil {
		r.Hostname = strings.TrimSpace(string(b))
	}
	return r, nil
}

func protoName(p netlink.RouteProtocol) string {
	switch p {
	case protoStatic:
		return "static"
	case protoDHCP:
		return "dhcp"
	case unix.RTPROT_KERNEL:
		return "kernel"
	case unix.RTPROT_BOOT:
		return "boot"
	case unix.RTPROT_RA:
		return "ra"
	}
	return fmt.Sprint(int(p))
}

func readResolvConf(p string) (ns, search []string) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			ns = append(ns, f[1])
		case "search", "domain":
			search = append(search, f[1:]...)
		}
	}
	return ns, search
}

// WriteText prints r for a person: one line per link with its addresses
// (leases marked with their expiry), then routes, DNS and hostname.
func (r *Report) WriteText(w io.Writer, now time.Time) error {
	leases := map[string]Lease{}
	for _, l := range r.Leases {
		leases[l.Link+" "+l.Address.String()] = l
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINK\tSTATE\tMTU\tMAC\tADDRESSES")
	links := append([]LinkStatus(nil), r.Links...)
	sort.SliceStable(links, func(i, j int) bool { return links[i].Name < links[j].Name })
	for _, l := range links {
		var as []string
		for _, a := range l.Addresses {
			if le, ok := leases[l.Name+" "+a]; ok {
				left := le.Expires.Sub(now).Round(time.Second)
				if left > 0 {
					a += fmt.Sprintf(" (dhcp from %s, expires in %s)", le.Server, left)
				} else {
					a += " (dhcp, expired)"
				}
			}
			as = append(as, a)
		}
		state := l.State
		if l.Master != "" {
			state += ", in " + l.Master
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", l.Name, state, l.MTU, l.MAC, strings.Join(as, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nROUTES")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, rt := range r.Routes {
		via := ""
		if rt.Gw != "" {
			via = "via " + rt.Gw
		}
		onlink := ""
		if rt.OnLink {
			onlink = "\tonlink"
		}
		fmt.Fprintf(tw, "  %s\t%s\tdev %s\tproto %s\tmetric %d%s\n", rt.Dst, via, rt.Dev, rt.Proto, rt.Metric, onlink)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nDNS")
	if len(r.Nameservers) == 0 {
		fmt.Fprintln(w, "  (no nameservers)")
	}
	for _, n := range r.Nameservers {
		fmt.Fprintln(w, "  nameserver", n)
	}
	if len(r.Search) > 0 {
		fmt.Fprintln(w, "  search", strings.Join(r.Search, " "))
	}
	if r.Hostname != "" {
		fmt.Fprintln(w, "\nHOSTNAME", r.Hostname)
	}
	_, err := fmt.Fprintf(w, "\n")
	return err
}
