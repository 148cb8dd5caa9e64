package datasources

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthos/berth/datasources/configdrive"
)

// Platform is what the machine looks like before any network request:
// DMI strings, filesystem labels and the kernel command line.
type Platform struct {
	SysVendor   string `json:"sys_vendor,omitempty"`
	ProductName string `json:"product_name,omitempty"`
	BIOSVendor  string `json:"bios_vendor,omitempty"`
	AssetTag    string `json:"chassis_asset_tag,omitempty"`
	// Devices are block devices with a recognised filesystem and label.
	Devices []configdrive.Device `json:"devices,omitempty"`
	Cmdline string               `json:"cmdline,omitempty"`
	// ScanError says why the block devices were not all read (a device
	// that did not answer in time); empty when the scan finished.
	ScanError string `json:"scan_error,omitempty"`
	// Cloud is the platform DMI names ("ec2", "gce", "openstack"), empty
	// when it names none; CloudWhy is the evidence.
	Cloud    string `json:"cloud,omitempty"`
	CloudWhy string `json:"cloud_why,omitempty"`
}

// scanLimit bounds the block-device scan of identification: a drive that
// does not answer (a broken CD-ROM) must not hold the boot.
const scanLimit = 2 * time.Second

// Identify reads root/sys/class/dmi/id, the labels of root/sys/class/block
// devices (read from root/dev) and root/proc/cmdline. Missing files are
// simply empty.
func Identify(root string) Platform {
	return identify(context.Background(), root)
}

// identify is Identify with the device scan bounded by ctx and scanLimit;
// when they end first, the devices are left out and ScanError says so.
func identify(ctx context.Context, root string) Platform {
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	dmi := "sys/class/dmi/id/"
	p := Platform{
		SysVendor:   read(dmi + "sys_vendor"),
		ProductName: read(dmi + "product_name"),
		BIOSVendor:  read(dmi + "bios_vendor"),
		AssetTag:    read(dmi + "chassis_asset_tag"),
		Cmdline:     read("proc/cmdline"),
	}
	scanned := make(chan []configdrive.Device, 1)
	go func() { scanned <- configdrive.Scan(root) }()
	limit := time.NewTimer(scanLimit)
	defer limit.Stop()
	select {
	case p.Devices = <-scanned:
	case <-limit.C:
		p.ScanError = fmt.Sprintf("block devices not all read within %s", scanLimit)
	case <-ctx.Done():
		p.ScanError = fmt.Sprintf("block device scan stopped: %v", ctx.Err())
	}
	hv := read("sys/hypervisor/uuid")
	switch {
	case p.SysVendor == "Amazon EC2" || strings.HasPrefix(p.BIOSVendor, "Amazon"):
		p.Cloud, p.CloudWhy = "ec2", "DMI sys_vendor/bios_vendor "+q(p.SysVendor, p.BIOSVendor)
	case strings.HasPrefix(strings.ToLower(hv), "ec2"):
		p.Cloud, p.CloudWhy = "ec2", "Xen hypervisor uuid starts with ec2"
	case p.SysVendor == "Google" || p.ProductName == "Google Compute Engine" || p.BIOSVendor == "Google":
		p.Cloud, p.CloudWhy = "gce", "DMI sys_vendor/product_name "+q(p.SysVendor, p.ProductName)
	case strings.HasPrefix(p.ProductName, "OpenStack") || strings.HasPrefix(p.SysVendor, "OpenStack") ||
		p.AssetTag == "OpenTelekomCloud":
		p.Cloud, p.CloudWhy = "openstack", "DMI product_name/sys_vendor/asset_tag "+q(p.ProductName, p.SysVendor, p.AssetTag)
	}
	return p
}

func q(s ...string) string {
	var parts []string
	for _, v := range s {
		if v != "" {
			parts = append(parts, `"`+v+`"`)
		}
	}
	if len(parts) == 0 {
		return `""`
	}
	return strings.Join(parts, "/")
}

// HasLabel reports the device carrying label (any case), or "".
func (p Platform) HasLabel(label string) string {
	for _, d := range p.Devices {
		if strings.EqualFold(d.Label, label) {
			return d.Path
		}
	}
	return ""
}

// plausible says whether a source of this kind is worth trying here.
// Local sources always are. A network source is skipped only when DMI
// names a different cloud, and never when it is the only source listed.
func (p Platform) plausible(kind string, only bool) (bool, string) {
	switch kind {
	case "configdrive":
		if dev := p.HasLabel(configdrive.Label); dev != "" {
			return true, "filesystem labelled " + configdrive.Label + " on " + dev
		}
		return true, "local source (no " + configdrive.Label + " label seen yet)"
	case "ec2", "gce", "openstack":
	default:
		return true, "local source"
	}
	switch {
	case p.Cloud == kind:
		return true, "platform looks like " + kind + ": " + p.CloudWhy
	case p.Cloud == "":
		return true, "platform not identified (DMI sys_vendor " + q(p.SysVendor) + "): trying"
	case kind == "ec2" && p.Cloud == "openstack":
		return true, "OpenStack also serves the EC2 metadata API"
	case only:
		return true, "platform looks like " + p.Cloud + ", but this is the only source listed"
	}
	return false, "platform looks like " + p.Cloud + " (" + p.CloudWhy + "), not " + kind
}
