// Command cloudimage builds Berth's cloud images (berth-openstack.qcow2,
// berth-gce.tar.gz, berth-ec2.raw, berth-ec2.vmdk) from the kernel and
// small initrd and system image of the bootable image, and prints each
// one's size.
//
//	cloudimage -kernel out/image/vmlinuz -initrd out/image/initrd.small -system-image out/image/system.sqfs -out out/cloud
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/berthos/berth/platforms/cloudimage"
	"github.com/berthos/berth/platforms/install"
)

func main() {
	kernel := flag.String("kernel", "out/image/vmlinuz", "kernel to install")
	initrd := flag.String("initrd", "out/image/initrd.small", "initrd to install")
	sysimg := flag.String("system-image", "out/image/system.sqfs", `system image to install beside the initrd ("" when the initrd holds it)`)
	out := flag.String("out", "out/cloud", "output directory")
	size := flag.Int64("size-gib", 2, "disk size of each image in GiB")
	seed := flag.String("seed", "berth", "seed of the GUIDs and UUIDs (the build passes the commit)")
	epoch := flag.Int64("epoch", 0, "timestamp of every file, in Unix seconds (the build passes SOURCE_DATE_EPOCH)")
	appendArgs := flag.String("append", "", "extra kernel arguments for every image")
	only := flag.String("only", "", "comma-separated image names to build (default all)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts := []cloudimage.Option{
		cloudimage.WithOutDir(*out), cloudimage.WithDiskSize(*size << 30), cloudimage.WithSeed(*seed),
		cloudimage.WithEpoch(time.Unix(*epoch, 0)), cloudimage.WithLog(os.Stderr), cloudimage.WithAppend(*appendArgs),
	}
	if *only != "" {
		opts = append(opts, cloudimage.WithOnly(strings.Split(*only, ",")...))
	}
	results, err := cloudimage.New(install.Sources{Kernel: *kernel, Initrd: *initrd, SystemImage: *sysimg}, opts...).Build(ctx)
	for _, r := range results {
		fmt.Println(r)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloudimage:", err)
		os.Exit(1)
	}
}
