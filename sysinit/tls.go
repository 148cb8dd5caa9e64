package sysinit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/internal/atomicfile"
)

// TLS file names, Docker's conventions.
const (
	TLSCACert     = "ca.pem"
	TLSCAKey      = "ca-key.pem"
	TLSServerCert = "server-cert.pem"
	TLSServerKey  = "server-key.pem"
	TLSClientCert = "cert.pem"
	TLSClientKey  = "key.pem"
)

// GenerateTLS writes certificates for `dockerd --tlsverify` into dir: the
// CA (ca.pem, ca-key.pem) in caDir, made once and reused, then a server
// certificate (server-cert.pem, server-key.pem) valid for hosts, or a
// client certificate (cert.pem, key.pem, plus a copy of ca.pem). It returns
// the files written.
func GenerateTLS(caDir, dir string, server bool, hosts []string, now time.Time) ([]string, error) {
	caCert, caKey, made, err := loadOrMakeCA(caDir, now)
	if err != nil {
		return nil, err
	}
	var written []string
	if made {
		written = append(written, filepath.Join(caDir, TLSCACert), filepath.Join(caDir, TLSCAKey))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tls gen: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "berth-client", Organization: []string{"Berth"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certName, keyName := TLSClientCert, TLSClientKey
	if server {
		certName, keyName = TLSServerCert, TLSServerKey
		tmpl.Subject.CommonName = "berth-server"
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("tls gen: sign: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tls gen: %w", err)
	}
	files := map[string][]byte{
		certName: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyName:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}
	if filepath.Clean(dir) != filepath.Clean(caDir) {
		files[TLSCACert] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls gen: %w", err)
	}
	for _, n := range []string{certName, keyName, TLSCACert} {
		data, ok := files[n]
		if !ok {
			continue
		}
		p := filepath.Join(dir, n)
		if err := atomicfile.Write(p, data, 0o600); err != nil {
			return nil, fmt.Errorf("tls gen: %w", err)
		}
		written = append(written, p)
	}
	return written, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func loadOrMakeCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, bool, error) {
	cb, cerr := os.ReadFile(filepath.Join(dir, TLSCACert))
	kb, kerr := os.ReadFile(filepath.Join(dir, TLSCAKey))
	switch {
	case cerr == nil && kerr == nil:
		cert, key, err := parseCA(cb, kb)
		if err != nil {
			return nil, nil, false, fmt.Errorf("tls gen: %s: %w", dir, err)
		}
		return cert, key, false, nil
	case cerr == nil || kerr == nil:
		// Half a CA (a config's ca_cert without its ca_key): making a new
		// one would replace the ca.pem dockerd trusts.
		return nil, nil, false, fmt.Errorf("tls gen: %s holds only one of %s and %s; a certificate can be signed only with both", dir, TLSCACert, TLSCAKey)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, false, fmt.Errorf("tls gen: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "berth-ca", Organization: []string{"Berth"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, false, fmt.Errorf("tls gen: CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, false, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, false, fmt.Errorf("tls gen: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, TLSCAKey), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, nil, false, fmt.Errorf("tls gen: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, TLSCACert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, false, fmt.Errorf("tls gen: %w", err)
	}
	return cert, key, true, nil
}

// parseCA reads a CA certificate and its private key (EC, RSA or
// Ed25519; PKCS #1, PKCS #8 or SEC 1) from PEM.
func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA: %w", err)
	}
	cert := pair.Leaf
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("CA: %q is not a CA certificate", cert.Subject.CommonName)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("CA: its key cannot sign")
	}
	return cert, key, nil
}

// TLSDir is where User Docker's `dockerd --tlsverify` reads its CA and
// server certificate (rancher.docker.tls_args), and where `ros tls gen`
// finds the CA.
const TLSDir = "/etc/docker/tls"

// TLSStore is where the CA and server certificate PID 1 makes for User
// Docker are kept: under /var/lib/rancher/conf, on the state disk, so the
// client certificates signed by that CA still work after a reboot.
const TLSStore = "/var/lib/rancher/conf/docker-tls"

// PrepareServerTLS puts in dir, before User Docker starts with
// rancher.docker.tls, the files its dockerd reads (ca.pem,
// server-cert.pem, server-key.pem, and ca-key.pem when known), from the
// first of these that fits together:
//   - the PEM text in e's ca_cert, server_cert and server_key (and
//     ca_key), RancherOS's keys;
//   - what dir already holds (this boot's `ros tls gen -s`, or write_files);
//   - the store's CA and server certificate; both are made there when
//     missing, and the server certificate is made again, signed by the
//     same CA, when it is not valid for each of hosts.
//
// It returns which one it used ("config", "kept", "store" or "made") and
// an error naming the key of config it could not use, or why nothing
// could be prepared.
func PrepareServerTLS(dir, store string, e cloudinit.Engine, hosts []string, now time.Time) (string, error) {
	cfgErr := writeConfigTLS(dir, e, now)
	if cfgErr == nil {
		return "config", nil
	}
	if errors.Is(cfgErr, ErrNoConfigTLS) {
		cfgErr = nil
	}
	if _, err := loadServerTLS(dir, now); err == nil {
		return "kept", cfgErr
	}
	// A CA made in dir earlier in this boot (`ros tls gen` for a client
	// before TLS was on) signs the server certificate too.
	if !exists(filepath.Join(store, TLSCACert)) && exists(filepath.Join(dir, TLSCACert)) && exists(filepath.Join(dir, TLSCAKey)) {
		if err := CopyServerTLS(dir, store); err != nil {
			return "", errors.Join(cfgErr, err)
		}
	}
	how := "store"
	leaf, err := loadServerTLS(store, now)
	if err != nil || !validFor(leaf, hosts) {
		// Whatever the old certificate was valid for stays valid: a name
		// given to `ros tls gen -s -H`, an address of an earlier boot.
		if leaf != nil {
			hosts = append(append(hosts, leaf.DNSNames...), ipStrings(leaf.IPAddresses)...)
		}
		if _, err := GenerateTLS(store, store, true, hosts, now); err != nil {
			return "", errors.Join(cfgErr, fmt.Errorf("prepare User Docker's TLS: %w", err))
		}
		how = "made"
	}
	if err := CopyServerTLS(store, dir); err != nil {
		return "", errors.Join(cfgErr, err)
	}
	return how, cfgErr
}

// ErrNoConfigTLS is CheckConfigTLS's answer for a config without inline
// TLS keys.
var ErrNoConfigTLS = errors.New("no TLS material in the config")

// CheckConfigTLS checks e's inline PEM keys (rancher.docker.ca_cert,
// ca_key, server_cert, server_key) as the boot does before it uses them:
// nil when they fit together, ErrNoConfigTLS when there are none, and
// otherwise why they would not be used with the key path at fault.
func CheckConfigTLS(e cloudinit.Engine, now time.Time) (string, error) {
	if e.CACert == "" && e.ServerCert == "" && e.ServerKey == "" && e.CAKey == "" {
		return "", ErrNoConfigTLS
	}
	var missing []string
	for _, k := range []struct{ name, v string }{{"ca_cert", e.CACert}, {"server_cert", e.ServerCert}, {"server_key", e.ServerKey}} {
		if strings.TrimSpace(k.v) == "" {
			missing = append(missing, "rancher.docker."+k.name)
		}
	}
	if len(missing) > 0 {
		return "rancher.docker", fmt.Errorf("rancher.docker: ca_cert, server_cert and server_key go together; %s missing, so they are not used", strings.Join(missing, " and "))
	}
	if _, err := checkServerTLS([]byte(e.CACert), []byte(e.ServerCert), []byte(e.ServerKey), now); err != nil {
		return "rancher.docker.server_cert", fmt.Errorf("rancher.docker.server_cert: %w; not used", err)
	}
	if e.CAKey != "" {
		if _, _, err := parseCA([]byte(e.CACert), []byte(e.CAKey)); err != nil {
			return "rancher.docker.ca_key", fmt.Errorf("rancher.docker.ca_key: %w; not used", err)
		}
	}
	return "", nil
}

// writeConfigTLS writes e's PEM keys into dir once they are checked to
// fit together; a config with none of them is ErrNoConfigTLS.
func writeConfigTLS(dir string, e cloudinit.Engine, now time.Time) error {
	if _, err := CheckConfigTLS(e, now); err != nil {
		return err
	}
	data := map[string]string{TLSCACert: e.CACert, TLSCAKey: e.CAKey, TLSServerCert: e.ServerCert, TLSServerKey: e.ServerKey}
	for _, f := range serverTLSFiles() {
		if data[f.name] == "" {
			continue
		}
		if err := atomicfile.Write(filepath.Join(dir, f.name), []byte(data[f.name]), f.perm); err != nil {
			return fmt.Errorf("write rancher.docker's TLS files: %w", err)
		}
	}
	return nil
}

// serverTLSFile is one file of a server's TLS directory and its mode.
type serverTLSFile struct {
	name string
	perm os.FileMode
}

// serverTLSFiles are the CA and server files, keys readable by root only.
func serverTLSFiles() []serverTLSFile {
	return []serverTLSFile{{TLSCACert, 0o644}, {TLSCAKey, 0o600}, {TLSServerCert, 0o644}, {TLSServerKey, 0o600}}
}

// loadServerTLS reads dir's ca.pem, server-cert.pem and server-key.pem
// and returns the server certificate once they fit together.
func loadServerTLS(dir string, now time.Time) (*x509.Certificate, error) {
	var data [3][]byte
	for i, n := range []string{TLSCACert, TLSServerCert, TLSServerKey} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("read TLS files: %w", err)
		}
		data[i] = b
	}
	leaf, err := checkServerTLS(data[0], data[1], data[2], now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return leaf, nil
}

// checkServerTLS checks what `dockerd --tlsverify` needs: a server
// certificate and key that match, and a CA that signed that certificate
// for server use, valid at now.
func checkServerTLS(caPEM, certPEM, keyPEM []byte, now time.Time) (*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("server certificate and key: %w", err)
	}
	leaf := pair.Leaf
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the CA certificate is not PEM")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("server certificate against the CA: %w", err)
	}
	return leaf, nil
}

// validFor says whether cert names every one of hosts.
func validFor(cert *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if h != "" && cert.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// CopyServerTLS copies the CA and server files from one directory to
// another (PID 1's store to TLSDir at boot; `ros tls gen -s`'s new ones
// back to the store), each written atomically, keys 0600. A file from is
// missing is skipped.
func CopyServerTLS(from, to string) error {
	for _, f := range serverTLSFiles() {
		data, err := os.ReadFile(filepath.Join(from, f.name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("copy TLS files: %w", err)
		}
		if err := atomicfile.Write(filepath.Join(to, f.name), data, f.perm); err != nil {
			return fmt.Errorf("copy TLS files: %w", err)
		}
	}
	return nil
}
