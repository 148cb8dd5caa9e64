package sysinit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

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

func loadOrMakeCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, bool, error) {
	cb, cerr := os.ReadFile(filepath.Join(dir, TLSCACert))
	kb, kerr := os.ReadFile(filepath.Join(dir, TLSCAKey))
	if cerr == nil && kerr == nil {
		c, _ := pem.Decode(cb)
		k, _ := pem.Decode(kb)
		if c == nil || k == nil {
			return nil, nil, false, errors.New("tls gen: the CA files are not PEM")
		}
		cert, err := x509.ParseCertificate(c.Bytes)
		if err != nil {
			return nil, nil, false, fmt.Errorf("tls gen: CA: %w", err)
		}
		key, err := x509.ParseECPrivateKey(k.Bytes)
		if err != nil {
			return nil, nil, false, fmt.Errorf("tls gen: CA key: %w", err)
		}
		return cert, key, false, nil
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
