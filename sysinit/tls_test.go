package sysinit

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthos/berth/cloudinit"
)

// TestGenerateTLS checks that a client holding the generated client
// certificate and a server holding the server certificate complete a
// mutually verified TLS handshake, as `docker --tlsverify` and
// `dockerd --tlsverify` do.
func TestGenerateTLS(t *testing.T) {
	dir := t.TempDir()
	serverDir, clientDir := filepath.Join(dir, "etc-docker-tls"), filepath.Join(dir, "home-.docker")
	now := time.Now()
	if _, err := GenerateTLS(serverDir, serverDir, true, []string{"192.0.2.10", "berth.example"}, now); err != nil {
		t.Fatalf("GenerateTLS(server): %v", err)
	}
	if _, err := GenerateTLS(serverDir, clientDir, false, nil, now); err != nil {
		t.Fatalf("GenerateTLS(client): %v", err)
	}
	for _, name := range []string{"192.0.2.10", "berth.example", "localhost"} {
		if err := handshake(t, serverDir, clientDir, name); err != nil {
			t.Errorf("mutual TLS handshake as %s: %v", name, err)
		}
	}
	if err := handshake(t, serverDir, clientDir, "198.51.100.1"); err == nil {
		t.Errorf("a handshake as 198.51.100.1, a name the server certificate lacks, succeeded")
	}
}

// handshake serves TLS with serverDir's server certificate, requiring a
// client certificate signed by its CA, and dials it as `docker
// --tlsverify` does with clientDir's (cert.pem, key.pem, ca.pem),
// checking the server's certificate for name.
func handshake(t *testing.T, serverDir, clientDir, name string) error {
	t.Helper()
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(clientDir, TLSCACert))
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("client ca.pem is not a certificate")
	}
	serverCA := x509.NewCertPool()
	sca, _ := os.ReadFile(filepath.Join(serverDir, TLSCACert))
	if !serverCA.AppendCertsFromPEM(sca) {
		t.Fatal("server ca.pem is not a certificate")
	}
	scert, err := tls.LoadX509KeyPair(filepath.Join(serverDir, TLSServerCert), filepath.Join(serverDir, TLSServerKey))
	if err != nil {
		t.Fatal(err)
	}
	ccert, err := tls.LoadX509KeyPair(filepath.Join(clientDir, TLSClientCert), filepath.Join(clientDir, TLSClientKey))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{scert}, ClientCAs: serverCA, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Write([]byte("ok"))
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{ccert}, ServerName: name})
	if err != nil {
		return err
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	if string(b) != "ok" {
		t.Errorf("read %q over TLS, want ok", b)
	}
	return nil
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPrepareServerTLSKeepsTheCAAcrossBoots is rancher.docker.tls with no
// certificate in the config: the first boot makes a CA and a server
// certificate in the store, and a client certificate made from it then
// still works after a reboot (a new, empty /etc/docker/tls), also when the
// machine has a new address.
func TestPrepareServerTLSKeepsTheCAAcrossBoots(t *testing.T) {
	root := t.TempDir()
	store := filepath.Join(root, "store")
	now := time.Now()
	e := cloudinit.Engine{TLS: true}
	boot1 := filepath.Join(root, "boot1")
	how, err := PrepareServerTLS(boot1, store, e, []string{"berth-1", "192.0.2.10"}, now)
	if err != nil || how != "made" {
		t.Fatalf("first boot: PrepareServerTLS = %q, %v; want made", how, err)
	}
	client := filepath.Join(root, "client")
	if _, err := GenerateTLS(boot1, client, false, nil, now); err != nil {
		t.Fatalf("ros tls gen (client): %v", err)
	}
	if err := handshake(t, boot1, client, "192.0.2.10"); err != nil {
		t.Errorf("first boot: %v", err)
	}

	boot2 := filepath.Join(root, "boot2")
	how, err = PrepareServerTLS(boot2, store, e, []string{"berth-1", "192.0.2.10"}, now)
	if err != nil || how != "store" {
		t.Fatalf("second boot: PrepareServerTLS = %q, %v; want store", how, err)
	}
	if readFile(t, filepath.Join(boot2, TLSServerCert)) != readFile(t, filepath.Join(boot1, TLSServerCert)) {
		t.Errorf("second boot: a new server certificate, though the old one names the same hosts")
	}

	boot3 := filepath.Join(root, "boot3")
	how, err = PrepareServerTLS(boot3, store, e, []string{"berth-1", "198.51.100.7"}, now)
	if err != nil || how != "made" {
		t.Fatalf("boot with a new address: PrepareServerTLS = %q, %v; want made", how, err)
	}
	if readFile(t, filepath.Join(boot3, TLSCACert)) != readFile(t, filepath.Join(boot1, TLSCACert)) {
		t.Errorf("boot with a new address: the CA changed, so the clients' certificates no longer work")
	}
	for _, name := range []string{"198.51.100.7", "192.0.2.10", "berth-1"} {
		if err := handshake(t, boot3, client, name); err != nil {
			t.Errorf("boot with a new address, as %s, with the first boot's client certificate: %v", name, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(boot3, TLSServerKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server-key.pem: %v, %v; want mode 0600", fi.Mode(), err)
	}
}

// TestPrepareServerTLSFromConfig is RancherOS's inline PEM keys: used as
// given when they fit together, and when they do not, the error names the
// key and User Docker still gets certificates.
func TestPrepareServerTLSFromConfig(t *testing.T) {
	now := time.Now()
	given := t.TempDir()
	if _, err := GenerateTLS(given, given, true, []string{"192.0.2.10"}, now); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if _, err := GenerateTLS(other, other, true, nil, now); err != nil {
		t.Fatal(err)
	}
	full := cloudinit.Engine{
		TLS:        true,
		CACert:     readFile(t, filepath.Join(given, TLSCACert)),
		CAKey:      readFile(t, filepath.Join(given, TLSCAKey)),
		ServerCert: readFile(t, filepath.Join(given, TLSServerCert)),
		ServerKey:  readFile(t, filepath.Join(given, TLSServerKey)),
	}
	t.Run("given", func(t *testing.T) {
		dir := t.TempDir()
		how, err := PrepareServerTLS(dir, filepath.Join(t.TempDir(), "store"), full, nil, now)
		if err != nil || how != "config" {
			t.Fatalf("PrepareServerTLS = %q, %v; want config", how, err)
		}
		for _, n := range []string{TLSCACert, TLSCAKey, TLSServerCert, TLSServerKey} {
			if readFile(t, filepath.Join(dir, n)) != readFile(t, filepath.Join(given, n)) {
				t.Errorf("%s is not the config's", n)
			}
		}
	})
	for _, tc := range []struct {
		name    string
		edit    func(e *cloudinit.Engine)
		wantErr string
	}{
		{"server_key missing", func(e *cloudinit.Engine) { e.ServerKey = "" }, "rancher.docker.server_key missing"},
		{"key of another certificate", func(e *cloudinit.Engine) { e.ServerKey = readFile(t, filepath.Join(other, TLSServerKey)) }, "rancher.docker.server_cert: server certificate and key"},
		{"certificate of another CA", func(e *cloudinit.Engine) {
			e.ServerCert = readFile(t, filepath.Join(other, TLSServerCert))
			e.ServerKey = readFile(t, filepath.Join(other, TLSServerKey))
		}, "rancher.docker.server_cert: server certificate against the CA"},
		{"not PEM", func(e *cloudinit.Engine) { e.CACert = "ca" }, "rancher.docker.server_cert: the CA certificate is not PEM"},
		{"ca_key of another CA", func(e *cloudinit.Engine) { e.CAKey = readFile(t, filepath.Join(other, TLSCAKey)) }, "rancher.docker.ca_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := full
			tc.edit(&e)
			dir := t.TempDir()
			how, err := PrepareServerTLS(dir, filepath.Join(t.TempDir(), "store"), e, []string{"192.0.2.10"}, now)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("PrepareServerTLS error = %v; want it to say %q", err, tc.wantErr)
			}
			if how != "made" {
				t.Errorf("PrepareServerTLS = %q, want made (certificates of its own)", how)
			}
			if _, err := loadServerTLS(dir, now); err != nil {
				t.Errorf("User Docker's TLS files do not fit together: %v", err)
			}
			if readFile(t, filepath.Join(dir, TLSCACert)) == full.CACert {
				t.Errorf("the config's CA was written, though it was not used")
			}
		})
	}
	t.Run("kept when dir already fits", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := GenerateTLS(dir, dir, true, nil, now); err != nil {
			t.Fatal(err)
		}
		before := readFile(t, filepath.Join(dir, TLSServerCert))
		e := full
		e.ServerKey = ""
		how, err := PrepareServerTLS(dir, filepath.Join(t.TempDir(), "store"), e, nil, now)
		if how != "kept" || err == nil {
			t.Errorf("PrepareServerTLS = %q, %v; want kept and the config's error", how, err)
		}
		if readFile(t, filepath.Join(dir, TLSServerCert)) != before {
			t.Errorf("server-cert.pem was replaced")
		}
	})
}

// TestTLSGenWithHalfACA is `ros tls gen` after the config gave ca_cert
// without ca_key: it says why it cannot sign, and does not replace the
// ca.pem dockerd trusts with a new CA.
func TestTLSGenWithHalfACA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := GenerateTLS(dir, dir, true, nil, now); err != nil {
		t.Fatal(err)
	}
	ca := readFile(t, filepath.Join(dir, TLSCACert))
	if err := os.Remove(filepath.Join(dir, TLSCAKey)); err != nil {
		t.Fatal(err)
	}
	_, err := GenerateTLS(dir, t.TempDir(), false, nil, now)
	if err == nil || !strings.Contains(err.Error(), "only one of ca.pem and ca-key.pem") {
		t.Errorf("GenerateTLS(client) error = %v; want it to say the CA key is missing", err)
	}
	if readFile(t, filepath.Join(dir, TLSCACert)) != ca {
		t.Errorf("ca.pem was replaced")
	}
}

// TestTLSGenWithAnRSACA signs a client certificate with an RSA CA in
// PKCS #1, as RancherOS's `ros tls gen` made them.
func TestTLSGenWithAnRSACA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rancher-ca"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, TLSCACert), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, TLSCAKey), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	client := t.TempDir()
	if _, err := GenerateTLS(dir, client, false, nil, now); err != nil {
		t.Fatalf("GenerateTLS(client) with an RSA CA: %v", err)
	}
	if got := readFile(t, filepath.Join(client, TLSCACert)); !bytes.Equal([]byte(got), caPEM) {
		t.Errorf("the client's ca.pem is not the RSA CA")
	}
	if _, err := GenerateTLS(dir, dir, true, nil, now); err != nil {
		t.Fatalf("GenerateTLS(server) with an RSA CA: %v", err)
	}
	if err := handshake(t, dir, client, "localhost"); err != nil {
		t.Errorf("handshake with certificates of an RSA CA: %v", err)
	}
}

// TestPrepareServerTLSUsesACAMadeThisBoot is `ros tls gen` for a client
// before rancher.docker.tls was turned on: the CA it made signs the
// server certificate, so that client certificate works.
func TestPrepareServerTLSUsesACAMadeThisBoot(t *testing.T) {
	root := t.TempDir()
	dir, client := filepath.Join(root, "etc-docker-tls"), filepath.Join(root, "client")
	now := time.Now()
	if _, err := GenerateTLS(dir, client, false, nil, now); err != nil {
		t.Fatal(err)
	}
	ca := readFile(t, filepath.Join(dir, TLSCACert))
	how, err := PrepareServerTLS(dir, filepath.Join(root, "store"), cloudinit.Engine{TLS: true}, []string{"192.0.2.10"}, now)
	if err != nil || how != "made" {
		t.Fatalf("PrepareServerTLS = %q, %v; want made", how, err)
	}
	if readFile(t, filepath.Join(dir, TLSCACert)) != ca {
		t.Errorf("ca.pem was replaced by a new CA")
	}
	if err := handshake(t, dir, client, "192.0.2.10"); err != nil {
		t.Errorf("handshake with the client certificate made before: %v", err)
	}
}
