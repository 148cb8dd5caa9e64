// Package source holds what every datasource shares: the Datasource
// interface, its Result, the sentinel errors, and the HTTP getter with
// capped exponential backoff that the network sources use. It sits below
// the datasources runner so each source package can import it without a
// cycle.
package source

import (
	"context"
	"errors"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/netconf"
)

// Sentinel errors. A source returns ErrNotFound (wrapped) when it is absent
// from this machine; the runner records that as "absent", not "error".
var (
	ErrNotFound = errors.New("datasource not found")
	ErrTimeout  = errors.New("datasource timed out")
)

// Needs says what a source needs before it can answer.
type Needs int

const (
	// Local sources read disks, files or the command line.
	Local Needs = iota
	// Network sources need a link with an address.
	Network
)

// String returns "local" or "network".
func (n Needs) String() string {
	if n == Network {
		return "network"
	}
	return "local"
}

// Datasource is one place a machine can learn who it is.
type Datasource interface {
	// Name is the list entry that selected it: "ec2", "configdrive:/dev/sr0".
	Name() string
	Needs() Needs
	// Fetch returns ErrNotFound (wrapped) when the source is absent.
	Fetch(ctx context.Context) (*Result, error)
}

// Result is what a source answered. Meta.Network and Network are the same
// pointer: the runner fills Meta.Network from Network, so Save writes the
// network into the metadata file and the boot can use either.
type Result struct {
	// UserData is raw; `ros datasource fetch --json` prints it beside the
	// result, as text when it is text.
	UserData []byte             `json:"-"`
	Meta     cloudinit.Metadata `json:"meta"`
	Network  *netconf.Config    `json:"network,omitempty"`
	// Files are files the platform injects (OpenStack "personality"
	// files from openstack/content/), keyed by their path on the machine.
	Files map[string][]byte `json:"files,omitempty"`
}
