package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/berthos/berth/internal/timesync"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// ntpConfPath is where RancherOS users put their servers: write_files
// with `container: ntp`.
const ntpConfPath = "/etc/ntp.conf"

// newNTPCmd is `ros ntp`, the ntp service's time sync client. The argv[0]
// name `ntpd` is the same command, so busybox-style `ntpd -n -q -p HOST`
// works.
func newNTPCmd(g *globalFlags) *cobra.Command {
	var (
		servers []string
		once    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ntp [-p SERVER]... [-q]",
		Short: "Keep the system clock in step with NTP servers",
		Long: `ntp queries the servers, ignores answers unfit to set a clock by
(kiss-o'-death, stratum 0 or 16, unsynchronised, wrong origin timestamp),
takes the one with the lowest root distance, and steps the clock when it is
more than 128ms off, or slews it (adjtime, at most 0.5ms per second)
otherwise. It polls every 64s, doubling to 1024s while the clock is stable
and back to 64s after a step or a failure. When no server answers it logs
each server's error and retries; it only stops on SIGTERM.

Servers come from -p, else from the server/pool lines of /etc/ntp.conf
(under --root), else pool.ntp.org. Setting the clock needs CAP_SYS_TIME.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(servers) == 0 {
				var err error
				if servers, err = ntpConfServers(g.path(ntpConfPath)); err != nil {
					return err
				}
			}
			log := slog.New(slog.NewTextHandler(cmd.OutOrStdout(), nil))
			c := timesync.New(servers, timesync.WithLogger(log), timesync.WithTimeout(timeout))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM)
			defer stop()
			if once {
				_, err := c.Sync(ctx)
				return err
			}
			c.Run(ctx)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&servers, "peer", "p", nil, "NTP server, host or host:port (repeatable)")
	f.BoolVarP(&once, "quit", "q", false, "sync once and exit; exit 1 if no server answered")
	f.BoolP("nofork", "n", false, "run in the foreground (always; accepted for busybox ntpd's flags)")
	f.DurationVar(&timeout, "timeout", timesync.DefaultTimeout, "time to wait for each server's answer")
	return cmd
}

// ntpConfServers returns the servers an ntp.conf names; none if there is
// no such file.
func ntpConfServers(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ntp: read servers: %w", err)
	}
	return timesync.ParseConf(b), nil
}
