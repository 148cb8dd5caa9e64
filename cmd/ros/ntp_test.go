package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthos/berth/cloudinit"
)

// These tests only use servers that never answer, so the command never
// reaches the real clock: a test that got an answer would set it.

// closedUDP returns a loopback address nothing listens on.
func closedUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

func TestNTPOnceFailsNamingEachServer(t *testing.T) {
	a, b := closedUDP(t), closedUDP(t)
	_, errOut, code := ros(t, "", "ntp", "-n", "-q", "-p", a, "-p", b)
	if code != 1 {
		t.Errorf("ros ntp -q exit %d, want 1", code)
	}
	for _, s := range []string{a, b} {
		if !strings.Contains(errOut, s+": query: ") || !strings.Contains(errOut, "connection refused") {
			t.Errorf("ros ntp -q stderr = %q, want %s's error", errOut, s)
		}
	}
}

func TestNTPServersFromNTPConf(t *testing.T) {
	root := t.TempDir()
	a, b := closedUDP(t), closedUDP(t)
	writeFile(t, filepath.Join(root, "etc/ntp.conf"), "server "+a+" iburst\nrestrict default kod\npool "+b+"\n")
	_, errOut, code := ros(t, "", "--root", root, "ntp", "-q")
	if code != 1 || !strings.Contains(errOut, a+": ") || !strings.Contains(errOut, b+": ") {
		t.Errorf("ros ntp -q with ntp.conf: exit %d, stderr %q; want both servers of ntp.conf tried", code, errOut)
	}

	// -p wins over ntp.conf.
	c := closedUDP(t)
	_, errOut, _ = ros(t, "", "--root", root, "ntp", "-q", "-p", c)
	if !strings.Contains(errOut, c+": ") || strings.Contains(errOut, a) {
		t.Errorf("ros ntp -q -p %s stderr = %q, want only %s", c, errOut, c)
	}

	if got, err := ntpConfServers(filepath.Join(t.TempDir(), "etc/ntp.conf")); got != nil || err != nil {
		t.Errorf("ntpConfServers(missing) = %v, %v, want none and no error (then pool.ntp.org is used)", got, err)
	}
}

func TestNTPLoopLogsAndDoesNotFail(t *testing.T) {
	a := closedUDP(t)
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs([]string{"ntp", "-p", a})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("ros ntp (loop) = %v, want nil when stopped: the supervisor must not see a failure", err)
	}
	if !strings.Contains(out.String(), "time sync failed") || !strings.Contains(out.String(), a+": query: ") || !strings.Contains(out.String(), "retry_in=1m4s") {
		t.Errorf("ros ntp stdout = %q, want the failure with %s's error and the retry interval", out.String(), a)
	}
}

func TestNTPDName(t *testing.T) {
	// busybox ntpd's flags, by the argv[0] name the base image links to ros.
	if code := run("ntpd", []string{"-nq", "-p", closedUDP(t)}); code != 1 {
		t.Errorf("ntpd -nq exit %d, want 1 (no server answered)", code)
	}
}

// TestDefaultNTPServiceRunsThisCommand guards the default ntp service
// against naming a program the base image does not have (as it once named
// busybox ntpd): its command must be this binary's ntp command, with flags
// it accepts, and the container must be allowed to set the clock.
func TestDefaultNTPServiceRunsThisCommand(t *testing.T) {
	cfg, _, err := cloudinit.Load(t.TempDir())
	if err != nil {
		t.Fatalf("cloudinit.Load(empty root): %v", err)
	}
	s := cfg.Rancher.Services["ntp"]
	if s == nil || len(s.Command) == 0 || s.Command[0] != "ros" || len(s.Entrypoint) != 0 {
		t.Fatalf("default ntp service = %+v, want the command ros ntp", s)
	}
	cmd, rest, err := newRootCmd().Find(s.Command[1:])
	if err != nil || cmd.Name() != "ntp" {
		t.Fatalf("ros %q finds %v, %v; want the ntp command", s.Command[1:], cmd.Name(), err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Errorf("ros ntp %q: %v", rest, err)
	}
	if !slices.Contains(s.CapAdd, "SYS_TIME") || s.Net != "host" {
		t.Errorf("default ntp service cap_add %v, net %q; want SYS_TIME and host", s.CapAdd, s.Net)
	}
}
