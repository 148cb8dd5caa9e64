package sysinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/berthos/berth/internal/atomicfile"
)

// System Docker's containers share one containerd shim. containerd's runc
// shim serves every container whose OCI spec carries the same
// shimGroupAnnotation from one process (the grouping Kubernetes pods
// use), but dockerd 20.10 cannot set annotations. So ros stands in for
// the shim binary on System Docker's PATH: when containerd asks it to
// start a shim, it adds the annotation to the container's bundle, then
// becomes the real shim. Each service's own shim was a Go daemon of about
// 4 MiB and a containerd connection; on a small machine they were the
// memory that pushed the engine binaries out of the page cache.

// ShimName is the runc shim's binary name, which containerd looks up on
// its PATH and ros answers to.
const ShimName = "containerd-shim-runc-v2"

const (
	shimGroupAnnotation = "io.containerd.runc.v2.group"
	// shimGroupEnv names the group; without it the stand-in only
	// execs the real shim.
	shimGroupEnv = "BERTH_SHIM_GROUP"
	// systemShimGroup is System Docker's group.
	systemShimGroup = "berth-system"
	// shimDir holds the stand-in: a link to ros, first on System
	// Docker's PATH.
	shimDir = "/run/berth/shim"
)

// WithShimGroup makes System Docker's containers share one shim: ros
// (the binary at path) stands in for the shim on System Docker's PATH.
func WithShimGroup(ros string) Option { return func(o *engineOptions) { o.shimRos = ros } }

// shimEnv puts the stand-in in place under root and returns the
// environment System Docker needs to use it.
func shimEnv(root, ros string) ([]string, error) {
	dir := filepath.Join(root, shimDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("shim group: %w", err)
	}
	link := filepath.Join(dir, ShimName)
	_ = os.Remove(link)
	if err := os.Symlink(ros, link); err != nil {
		return nil, fmt.Errorf("shim group: %w", err)
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/sbin:/usr/bin:/sbin:/bin"
	}
	return []string{"PATH=" + dir + ":" + path, shimGroupEnv + "=" + systemShimGroup}, nil
}

// RunShim is ros called as ShimName, with containerd's arguments: on
// "start" (the last argument) it adds the group's annotation to the
// bundle in the working directory, then it execs the real shim, the next
// one on PATH. It returns only on an error.
func RunShim(self string, args []string) error {
	if group := os.Getenv(shimGroupEnv); group != "" && len(args) > 0 && args[len(args)-1] == "start" {
		if err := GroupBundle(".", group); err != nil {
			// containerd logs the shim's stderr; the container still
			// starts, in a shim of its own.
			fmt.Fprintf(os.Stderr, "berth shim: %v\n", err)
		}
	}
	real, err := realShim(self, os.Getenv("PATH"))
	if err != nil {
		return err
	}
	return unix.Exec(real, append([]string{real}, args...), os.Environ())
}

// GroupBundle sets the shim group annotation in dir/config.json unless
// the spec already names a group; every other field stays as it was.
func GroupBundle(dir, group string) error {
	p := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("shim group: %w", err)
	}
	var spec map[string]json.RawMessage
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("shim group: %s: %w", p, err)
	}
	ann := map[string]string{}
	if raw, ok := spec["annotations"]; ok {
		if err := json.Unmarshal(raw, &ann); err != nil {
			return fmt.Errorf("shim group: %s: annotations: %w", p, err)
		}
		if ann == nil {
			ann = map[string]string{}
		}
	}
	if _, ok := ann[shimGroupAnnotation]; ok {
		return nil
	}
	ann[shimGroupAnnotation] = group
	if spec["annotations"], err = json.Marshal(ann); err != nil {
		return fmt.Errorf("shim group: %w", err)
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("shim group: %w", err)
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(p); err == nil {
		mode = st.Mode().Perm()
	}
	return atomicfile.Write(p, out, mode)
}

// realShim finds ShimName on path, skipping the stand-in itself (self, as
// containerd ran it) and any other link to this same binary.
func realShim(self, path string) (string, error) {
	me, _ := os.Stat("/proc/self/exe")
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || filepath.Clean(dir) == filepath.Dir(filepath.Clean(self)) {
			continue
		}
		cand := filepath.Join(dir, ShimName)
		st, err := os.Stat(cand)
		if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
			continue
		}
		if me != nil && os.SameFile(me, st) {
			continue
		}
		return cand, nil
	}
	return "", errors.New("berth shim: no " + ShimName + " on PATH besides this one")
}
