// Command fakemeta serves one of Berth's fake metadata services (ec2, gce,
// openstack) on a chosen address, with optional faults, or writes a fake
// config-drive image, so the qemu e2e tests can reuse the unit tests'
// fakes. Examples:
//
//	fakemeta -kind ec2 -addr 127.0.0.1:8080 -user-data ud.yml -imdsv2
//	fakemeta -kind gce -addr 127.0.0.1:8081 -user-data ud.yml -delay 2s
//	fakemeta -drive cd.iso -user-data ud.yml           # ISO, label config-2
//	fakemeta -drive cd.img -fat 32 -user-data ud.yml   # FAT32 (mkfs.vfat, mcopy)
//
// It prints "listening on ADDR" once it accepts connections and runs until
// killed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/berthos/berth/datasources/fake"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fakemeta:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("fakemeta", flag.ContinueOnError)
	kind := fs.String("kind", "ec2", "fake to serve: ec2, gce or openstack")
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on")
	udPath := fs.String("user-data", "", "file served as user-data (none: no user-data)")
	imdsv2 := fs.Bool("imdsv2", false, "ec2: refuse requests without a token")
	delay := fs.Duration("delay", 0, "fault: delay every answer")
	fail := fs.Int("fail", 0, "fault: answer the first N requests with 500")
	hang := fs.Bool("hang", false, "fault: never answer")
	drive := fs.String("drive", "", "write a config-drive image to this path instead of serving")
	fat := fs.Int("fat", 0, "with -drive: FAT12, 16 or 32 instead of ISO9660")
	label := fs.String("label", "config-2", "with -drive: filesystem label")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ud []byte
	if *udPath != "" {
		b, err := os.ReadFile(*udPath)
		if err != nil {
			return fmt.Errorf("read user-data: %w", err)
		}
		ud = b
	}
	if *drive != "" {
		files := fake.DriveFiles(ud)
		if *fat != 0 {
			return fake.BuildFAT(*drive, *label, *fat, files)
		}
		return fake.BuildISO(*drive, *label, files)
	}
	faults := fake.Faults{Delay: *delay, Fail5xx: *fail, Hang: *hang}
	var h http.Handler
	switch *kind {
	case "ec2":
		e := &fake.EC2{UserData: ud, Meta: fake.EC2Meta(), RequireToken: *imdsv2}
		e.SetFaults(faults)
		h = e
	case "gce":
		m := fake.GCEMeta()
		if ud != nil {
			m["instance/attributes/user-data"] = string(ud)
		}
		g := &fake.GCE{Meta: m}
		g.SetFaults(faults)
		h = g
	case "openstack":
		o := &fake.OpenStack{Files: fake.OpenStackFiles(ud)}
		o.SetFaults(faults)
		h = o
	default:
		return fmt.Errorf("-kind %q: want ec2, gce or openstack", *kind)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Printf("listening on %s\n", l.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
