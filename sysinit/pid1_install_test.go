package sysinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthos/berth/bootstrap"
	"github.com/berthos/berth/platforms/install"
)

func TestPID1UnattendedInstall(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		runErr  error
		asked   bool
		network bool
		want    string // a console line
		req     install.Request
	}{
		{name: "none", cmdline: "console=ttyS0 panic=10", asked: false},
		{name: "empty device", cmdline: "rancher.install.device=", asked: false},
		{
			name:    "done",
			cmdline: "console=ttyS0 rancher.install.device=/dev/vda rancher.install.force rancher.install.type=amazon",
			asked:   true, want: "install to /dev/vda done; powering off",
			req: install.Request{Device: "/dev/vda", Platform: install.Amazon, Force: true, Root: "/"},
		},
		{
			name:    "cloud-config over http",
			cmdline: "rancher.install.device=/dev/vda rancher.install.cloud_config_url=http://192.0.2.1/cc.yml",
			asked:   true, network: true, want: "install to /dev/vda done; powering off",
			req: install.Request{Device: "/dev/vda", Platform: install.Generic, CloudConfig: "http://192.0.2.1/cc.yml", Root: "/"},
		},
		{
			name:    "failed",
			cmdline: "rancher.install.device=/dev/vda",
			runErr:  errors.New("install: /dev/vda holds a GPT partition table; refusing"),
			asked:   true, want: "install to /dev/vda FAILED: install: /dev/vda holds a GPT partition table; refusing; powering off",
			req: install.Request{Device: "/dev/vda", Platform: install.Generic, Root: "/"},
		},
		{
			name:    "bad type",
			cmdline: "rancher.install.device=/dev/vda rancher.install.type=azure",
			asked:   true, want: `install to /dev/vda FAILED: rancher.install.type: parse platform: unknown platform "azure"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var console strings.Builder
			log := bootstrap.NewLogger(&console)
			var gotReq *install.Request
			network := false
			u := pid1Unattended{
				log:     log,
				network: func(context.Context) error { network = true; return nil },
				wait:    func(context.Context, time.Duration, ...string) bool { return true },
				run: func(_ context.Context, req install.Request, out, progress io.Writer, confirm func(*install.Plan) error) error {
					gotReq = &req
					if confirm != nil {
						t.Error("an unattended install asks for confirmation")
					}
					fmt.Fprint(out, "Install Berth (generic) to /dev/vda (2 GiB).\nKernel: /tmp/x/vmlinuz\n")
					fmt.Fprintln(progress, "install: done")
					return tt.runErr
				},
			}
			if got := u.do(context.Background(), tt.cmdline); got != tt.asked {
				t.Fatalf("do(%q) = %v, want %v", tt.cmdline, got, tt.asked)
			}
			if !tt.asked {
				if console.Len() != 0 || gotReq != nil {
					t.Errorf("no install asked for, yet it ran or printed %q", console.String())
				}
				return
			}
			if !strings.Contains(console.String(), tt.want) {
				t.Errorf("console lacks %q:\n%s", tt.want, console.String())
			}
			if network != tt.network {
				t.Errorf("network brought up = %v, want %v", network, tt.network)
			}
			if tt.req.Device == "" {
				if gotReq != nil {
					t.Errorf("install ran after a bad command line: %+v", gotReq)
				}
				return
			}
			if gotReq == nil {
				t.Fatal("install did not run")
			}
			if diff := cmp.Diff(tt.req, *gotReq); diff != "" {
				t.Errorf("install request (-want +got):\n%s", diff)
			}
			// The plan's lines each become a console line.
			if !strings.Contains(console.String(), "] berth: Kernel: /tmp/x/vmlinuz\n") {
				t.Errorf("plan not logged line by line:\n%s", console.String())
			}
		})
	}
}

func TestPID1UnattendedNoDevice(t *testing.T) {
	var console strings.Builder
	u := pid1Unattended{
		log:  bootstrap.NewLogger(&console),
		wait: func(context.Context, time.Duration, ...string) bool { return false },
		run: func(context.Context, install.Request, io.Writer, io.Writer, func(*install.Plan) error) error {
			t.Error("install ran without its device")
			return nil
		},
	}
	if !u.do(context.Background(), "rancher.install.device=/dev/vdz") {
		t.Fatal("do = false, want true (the machine powers off)")
	}
	if want := "install to /dev/vdz FAILED: /dev/vdz: no such device after 30 s; powering off"; !strings.Contains(console.String(), want) {
		t.Errorf("console lacks %q:\n%s", want, console.String())
	}
}
