package sysinit

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
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
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(clientDir, TLSCACert))
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("client ca.pem is not a certificate")
	}
	scert, err := tls.LoadX509KeyPair(filepath.Join(serverDir, TLSServerCert), filepath.Join(serverDir, TLSServerKey))
	if err != nil {
		t.Fatal(err)
	}
	ccert, err := tls.LoadX509KeyPair(filepath.Join(clientDir, TLSClientCert), filepath.Join(clientDir, TLSClientKey))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{scert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
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
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{ccert}, ServerName: "192.0.2.10"})
	if err != nil {
		t.Fatalf("mutual TLS handshake: %v", err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	if string(b) != "ok" {
		t.Errorf("read %q over TLS, want ok", b)
	}
}
