package timesync

import "strings"

// ParseConf returns the servers named in an ntp.conf: the host of each
// `server`, `pool` or `peer` line, in order, skipping options such as
// -4 and iburst. Every other line (restrict, driftfile, ...) is ignored.
// RancherOS documents writing /etc/ntp.conf into the ntp container with
// write_files to choose the servers, and busybox ntpd reads the same
// lines when it is given no -p.
func ParseConf(data []byte) []string {
	var servers []string
	for line := range strings.Lines(string(data)) {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "server", "pool", "peer":
		default:
			continue
		}
		for _, a := range f[1:] {
			if !strings.HasPrefix(a, "-") {
				servers = append(servers, a)
				break
			}
		}
	}
	return servers
}
