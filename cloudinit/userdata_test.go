package cloudinit

import (
	"bytes"
	"compress/gzip"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

const mimeUserData = "Content-Type: multipart/mixed; boundary=\"XX\"\r\nMIME-Version: 1.0\r\n\r\n" +
	"--XX\r\nContent-Type: text/cloud-config; charset=\"us-ascii\"\r\n\r\n#cloud-config\nhostname: one\nrancher:\n  debug: true\n\r\n" +
	"--XX\r\nContent-Type: text/x-shellscript\r\nContent-Disposition: attachment; filename=\"setup.sh\"\r\n\r\n#!/bin/sh\necho hi\n\r\n" +
	"--XX\r\nContent-Type: text/cloud-config\r\nContent-Transfer-Encoding: base64\r\n\r\nI2Nsb3VkLWNvbmZpZwpob3N0bmFtZTogdHdvCg==\r\n" +
	"--XX--\r\n"

func TestDecodeUserData(t *testing.T) {
	tests := []struct {
		name        string
		in          []byte
		wantConfig  string // the decoded cloud-config's hostname, "" for none
		wantScripts []Script
		wantCC      bool
	}{
		{"empty", nil, "", nil, false},
		{"blank", []byte("  \n\n"), "", nil, false},
		{"cloud-config", []byte("#cloud-config\nhostname: a\n"), "a", nil, true},
		{"script", []byte("#!/bin/sh\necho hi\n"), "", []Script{{Name: "user-data", Body: []byte("#!/bin/sh\necho hi\n")}}, false},
		{"gzip cloud-config", gz(t, "#cloud-config\nhostname: z\n"), "z", nil, true},
		{"mime multipart", []byte(mimeUserData), "two", []Script{{Name: "setup.sh", Body: []byte("#!/bin/sh\necho hi\n")}}, true},
		{"gzip mime", gz(t, mimeUserData), "two", []Script{{Name: "setup.sh", Body: []byte("#!/bin/sh\necho hi\n")}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ud, err := DecodeUserData(tt.in)
			if err != nil {
				t.Fatalf("DecodeUserData: %v", err)
			}
			if diff := cmp.Diff(tt.wantScripts, ud.Scripts, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("scripts mismatch (-want +got):\n%s", diff)
			}
			if (ud.CloudConfig != nil) != tt.wantCC {
				t.Fatalf("CloudConfig = %q, want present %v", ud.CloudConfig, tt.wantCC)
			}
			if !tt.wantCC {
				return
			}
			cfg, rep, err := Parse("user-data", ud.CloudConfig)
			if err != nil || rep.HasErrors() {
				t.Fatalf("Parse(decoded) = %v\n%s", err, rep)
			}
			if cfg.Hostname != tt.wantConfig {
				t.Errorf("hostname = %q, want %q", cfg.Hostname, tt.wantConfig)
			}
		})
	}
}

// TestDecodeUserDataMIMEMerge: several cloud-config parts merge in order,
// a later part overriding an earlier one key by key.
func TestDecodeUserDataMIMEMerge(t *testing.T) {
	ud, err := DecodeUserData([]byte(mimeUserData))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Parse("user-data", ud.CloudConfig)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hostname != "two" || !cfg.Rancher.Debug {
		t.Errorf("merged parts: hostname %q debug %v, want two true", cfg.Hostname, cfg.Rancher.Debug)
	}
}

func TestDecodeUserDataErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"plain yaml without header", []byte("hostname: a\n"), "unsupported user-data format"},
		{"include", []byte("#include\nhttp://192.0.2.1/x\n"), "unsupported user-data format"},
		{"broken cloud-config", []byte("#cloud-config\na: [\n"), "user-data:2: did not find expected node content"},
		{"cloud-config list", []byte("#cloud-config\n- a\n"), "must be a mapping"},
		{"bad gzip", []byte{0x1f, 0x8b, 1, 2, 3}, "gunzip"},
		{"mime part of unknown type", []byte("Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/x-include-url\n\nhttp://192.0.2.1/\n--B--\n"), "text/x-include-url"},
		{"mime without boundary", []byte("Content-Type: multipart/mixed\n\nx"), "boundary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ud, err := DecodeUserData(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("DecodeUserData = %v, %v; want error containing %q", ud, err, tt.want)
			}
			if ud != nil {
				t.Errorf("DecodeUserData returned %v with an error, want nil", ud)
			}
		})
	}
	if _, err := DecodeUserData([]byte("hello")); !errors.Is(err, ErrUserDataFormat) {
		t.Errorf("DecodeUserData(hello) = %v, want ErrUserDataFormat", err)
	}
}

func TestSubstitute(t *testing.T) {
	m := &Metadata{PublicIPv4: "203.0.113.5", PrivateIPv4: "192.0.2.5", PublicIPv6: "2001:db8::5", PrivateIPv6: ""}
	in := "#cloud-config\nrancher:\n  environment:\n    PUB: $public_ipv4\n    PRIV: $private_ipv4\n    V6: $public_ipv6\n    P6: x$private_ipv6\n"
	want := "#cloud-config\nrancher:\n  environment:\n    PUB: 203.0.113.5\n    PRIV: 192.0.2.5\n    V6: 2001:db8::5\n    P6: x\n"
	if got := string(Substitute([]byte(in), m)); got != want {
		t.Errorf("Substitute mismatch (-want +got):\n%s", cmp.Diff(want, got))
	}
	if got := string(Substitute([]byte(in), nil)); got != in {
		t.Errorf("Substitute(nil metadata) changed the input: %q", got)
	}
}
