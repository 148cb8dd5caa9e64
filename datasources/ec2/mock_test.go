package ec2

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestAgainstEC2MetadataMock fetches through this source from
// amazon-ec2-metadata-mock, a third-party emulator (`make tools` installs
// it into bin/tools; `make unit` puts that on PATH), in IMDSv2-only mode.
func TestAgainstEC2MetadataMock(t *testing.T) {
	bin, err := exec.LookPath("ec2-metadata-mock")
	if err != nil {
		t.Skipf("ec2-metadata-mock not on PATH (run `make tools` and `make unit`): %v", err)
	}
	dir := t.TempDir()
	const ud = "#cloud-config\nhostname: from-aemm\n"
	cfg, _ := json.Marshal(map[string]any{
		"userdata": map[string]any{"values": map[string]string{"userdata": base64.StdEncoding.EncodeToString([]byte(ud))}},
	})
	cfgPath := filepath.Join(dir, "aemm.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "-n", "127.0.0.1", "-p", strconv.Itoa(port), "-c", cfgPath, "--imdsv2")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ec2-metadata-mock did not answer on %s: %v", endpoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := New(WithEndpoint(endpoint), WithIMDSv1(false)).Fetch(ctx)
	if err != nil {
		t.Fatalf("Fetch from ec2-metadata-mock = %v", err)
	}
	if string(r.UserData) != ud {
		t.Errorf("UserData = %q, want %q", r.UserData, ud)
	}
	if r.Meta.InstanceID == "" || r.Meta.Hostname == "" || len(r.Meta.SSHPublicKeys) != 1 {
		t.Errorf("Meta = %+v, want instance-id, hostname and one SSH key", r.Meta)
	}
	if r.Network == nil || len(r.Network.Interfaces) == 0 {
		t.Errorf("Network = %+v, want the mock's interface", r.Network)
	}
}
