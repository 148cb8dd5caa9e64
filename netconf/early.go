package netconf

import (
	"context"
	"fmt"
	"net"
	"time"
)

// Early is the network for the datasources, called by the boot before
// they run: it brings loopback and every link up and, when dhcp is true
// (a network datasource is listed), takes a temporary DHCP lease on each
// eth* link in parallel, within DefaultDHCPTimeout or ctx's deadline. It
// removes nothing. It writes resolv.conf (so metadata host names resolve)
// and the state file under the root.
//
// Pass the result to the final Apply with WithPrevious: leases on links
// that still want DHCP are kept as they are (the address the metadata
// service was reached by stays), and their renewals move to the new State.
// A link that becomes static gets its static addresses before the leased
// one is removed.
func Early(ctx context.Context, dhcp bool, opts ...Option) (*State, error) {
	o := newOptions(opts)
	h, err := o.handle()
	if err != nil {
		return nil, err
	}
	ls, err := h.LinkList()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range ls {
		if a := l.Attrs(); a.Flags&net.FlagLoopback != 0 && a.Flags&net.FlagUp == 0 {
			if err := h.LinkSetUp(l); err != nil {
				h.Close()
				return nil, fmt.Errorf("set %s up: %w", a.Name, err)
			}
		}
	}
	h.Close()
	cfg := Config{Interfaces: map[string]InterfaceConfig{
		"*":    {DHCP: new(false)},
		"eth*": {DHCP: new(dhcp)},
	}}
	if dl, ok := ctx.Deadline(); ok {
		cfg.DHCPTimeout = max(1, int(time.Until(dl).Seconds()))
	}
	return Apply(ctx, cfg, append(opts, func(o *options) { o.early = true })...)
}
