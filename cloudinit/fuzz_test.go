package cloudinit

import (
	"testing"
)

// The fuzz targets prove that no input panics the parsers. Their seed
// corpus is in testdata/fuzz/<target>/.

func FuzzCmdline(f *testing.F) {
	f.Add("BOOT_IMAGE=/vmlinuz console=ttyS0 rancher.cloud_init.datasources=[ec2,gce] rancher.debug -- cc.hostname=x")
	f.Add(`"rancher.environment.A=b c: d" rancher.password='x y' rancher.network.interfaces.eth1.100.mtu=1400`)
	f.Fuzz(func(t *testing.T, s string) {
		cfg, rep := ParseCmdline(s)
		if cfg == nil || rep == nil {
			t.Fatalf("ParseCmdline(%q) = nil", s)
		}
		_ = rep.String()
		CmdlineValue(s, "cloud-config-url")
		// The same values through `ros config set`'s path.
		for _, a := range tokenizeCmdline(s) {
			if KnownKey(a.key) {
				_, _ = ValueNode(a.key, a.value)
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("#cloud-config\nhostname: a\nrancher:\n  network:\n    interfaces:\n      eth0: {mtu: abc}\n"))
	f.Add([]byte("x: &a {image: b}\nrancher:\n  services:\n    s:\n      <<: *a\n      command: sh -c 'a b'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, rep, err := Parse("fuzz", data)
		if err != nil {
			if cfg != nil || rep != nil {
				t.Fatalf("Parse error %v with a result", err)
			}
			return
		}
		_ = rep.String()
		// What Parse kept must parse again without errors.
		tree, _, err := parseTree("fuzz", data)
		if err != nil {
			t.Fatalf("parseTree failed after Parse succeeded: %v", err)
		}
		_, rep1 := check("fuzz", tree)
		_, rep2 := check("fuzz", tree)
		if rep2.HasErrors() {
			t.Fatalf("the checked tree still has errors:\n%s\n(first pass:\n%s)", rep2, rep1)
		}
		merged := mergeTree(cloneTree(tree), tree)
		Decode(merged)
	})
}

func FuzzDecodeUserData(f *testing.F) {
	f.Add([]byte(mimeUserData))
	f.Add([]byte("#!/bin/sh\necho hi\n"))
	f.Add([]byte("#cloud-config\nhostname: a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ud, err := DecodeUserData(data)
		if (ud == nil) == (err == nil) {
			t.Fatalf("DecodeUserData = %v, %v: want exactly one", ud, err)
		}
		if ud != nil && ud.CloudConfig != nil {
			if _, _, err := Parse("user-data", ud.CloudConfig); err != nil {
				t.Fatalf("decoded cloud-config does not parse: %v", err)
			}
		}
	})
}
