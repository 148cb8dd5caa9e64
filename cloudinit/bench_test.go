package cloudinit

import (
	"fmt"
	"strings"
	"testing"
)

// bigConfig is a realistic cloud-config of about 500 lines.
func bigConfig() []byte {
	var b strings.Builder
	b.WriteString("#cloud-config\nhostname: bench-node\nssh_authorized_keys:\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%03d user%d@example.com\n", i, i)
	}
	b.WriteString("write_files:\n")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&b, "  - path: /etc/bench/file%d.conf\n    permissions: \"0644\"\n    owner: root:root\n    content: |\n      line one %d\n      line two\n", i, i)
	}
	b.WriteString("runcmd:\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "  - [touch, /tmp/f%d]\n  - echo %d > /tmp/g\n", i, i)
	}
	b.WriteString("rancher:\n  debug: true\n  environment:\n")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&b, "    VAR_%d: value-%d\n", i, i)
	}
	b.WriteString("  sysctl:\n    net.ipv4.ip_forward: 1\n    kernel.domainname: test\n")
	b.WriteString("  network:\n    dns:\n      nameservers: [192.0.2.53, 198.51.100.53]\n    interfaces:\n")
	for i := 0; i < 15; i++ {
		fmt.Fprintf(&b, "      eth%d:\n        address: 192.0.2.%d/24\n        gateway: 192.0.2.1\n        mtu: 1500\n        pre_up:\n          - echo up %d\n", i, 10+i, i)
	}
	b.WriteString("  services:\n")
	for i := 0; i < 15; i++ {
		fmt.Fprintf(&b, "    svc%d:\n      image: busybox:1.36\n      command: sh -c 'sleep %d'\n      restart: always\n      net: host\n      privileged: true\n      labels:\n        io.rancher.os.scope: system\n        io.rancher.os.after: network\n      environment:\n        - A=%d\n        - B*\n      volumes:\n        - /var/lib/svc%d:/data\n      ports:\n        - \"80%02d:80\"\n", i, i, i, i, i)
	}
	return []byte(b.String())
}

// BenchmarkParseMerge: parse + validate one 500-line cloud-config, merge
// it over the built-in defaults (parsed once, outside the loop) and decode
// the snapshot.
func BenchmarkParseMerge(b *testing.B) {
	data := bigConfig()
	base, _ := DefaultsTree()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep := &Report{}
		acc := layer(cloneTree(base), "bench", data, rep)
		cfg := Decode(acc)
		if rep.HasErrors() || cfg.Rancher.Services["svc14"] == nil {
			b.Fatal("unexpected result")
		}
	}
}

// BenchmarkLoadWithDefaults is BenchmarkParseMerge with the built-in
// defaults parsed and checked in every iteration, as Load does.
func BenchmarkLoadWithDefaults(b *testing.B) {
	data := bigConfig()
	if n := strings.Count(string(data), "\n"); n < 480 || n > 540 {
		b.Fatalf("bench config has %d lines, want about 500", n)
	}
	if _, rep, err := Parse("bench", data); err != nil || rep.HasErrors() {
		b.Fatalf("bench config: %v\n%s", err, rep)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		acc, rep := DefaultsTree()
		acc = layer(acc, "bench", data, rep)
		cfg := Decode(acc)
		if rep.HasErrors() || cfg.Rancher.Services["svc14"] == nil {
			b.Fatal("unexpected result")
		}
	}
}
