// Command sysimages writes the OS's images (base, console, docker), as a
// tarball and an image store, for the image build: `sysimages -ros bin/ros -version V -out DIR`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/berthos/berth/platforms/sysimages"
)

func main() {
	out := flag.String("out", "out/images", "directory to write the tarballs into")
	ros := flag.String("ros", "bin/ros", "the static ros binary")
	version := flag.String("version", "dev", "the Berth version: the images' tag")
	busybox := flag.String("busybox", "/bin/busybox", "a static busybox")
	dropbear := flag.String("dropbear", "/usr/sbin/dropbear", "the dropbear SSH server")
	flag.Parse()
	imgs, err := sysimages.Build(context.Background(), *out,
		sysimages.WithRos(*ros), sysimages.WithVersion(*version),
		sysimages.WithBusybox(*busybox), sysimages.WithDropbear(*dropbear))
	if err != nil {
		fmt.Fprintln(os.Stderr, "sysimages:", err)
		os.Exit(1)
	}
	for _, img := range imgs {
		fmt.Printf("%s\t%s\t%d\n", img.Ref, img.Path, img.Size)
	}
}
