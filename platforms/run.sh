#!/bin/bash
# Boots out/image in qemu with the serial console on this terminal, a
# default cloud-config on a config drive (ssh key generated into
# out/run/id_ed25519), SSH forwarded to 127.0.0.1:2222, and a state disk
# out/run/state.img (formatted on first boot) so what you do persists.
# KVM when /dev/kvm works and the CPU has vmx/svm, TCG otherwise.
# Env: MEM (MiB, default 2048), SSH_PORT (2222), IMAGE (out/image),
#      CMDLINE (extra kernel arguments), STATE=0 (no state disk).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-out/image}
RUN=${RUN:-out/run}
MEM=${MEM:-2048}
SSH_PORT=${SSH_PORT:-2222}
mkdir -p "$RUN"
[ -f "$RUN/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C "berth make run" -f "$RUN/id_ed25519"
PUB=$(cat "$RUN/id_ed25519.pub")

# The default cloud-config, as the user-data of a config drive (an ISO
# labelled config-2, OpenStack's layout).
CD=$RUN/config-drive.d
rm -rf "$CD"; mkdir -p "$CD/openstack/latest"
cat > "$CD/openstack/latest/user_data" <<C
#cloud-config
hostname: berth
ssh_authorized_keys:
  - $PUB
C
echo '{"uuid": "make-run"}' > "$CD/openstack/latest/meta_data.json"
genisoimage -quiet -o "$RUN/config-drive.iso" -V config-2 -J -R "$CD"

if [ "${STATE:-1}" = 1 ] && [ ! -f "$RUN/state.img" ]; then
  truncate -s 4G "$RUN/state.img"   # sparse and blank: PID 1 formats it
fi

# Under TCG: no ERMS/FSRM, whose `rep movsb` TCG runs a byte at a time,
# and norandmaps, since TCG translates a process's code again wherever
# address randomisation puts it (User Docker answers about 3.5 s and 6 s
# sooner; e2e.TCGCPU and e2e.TCGCmdline say more). Under KVM neither.
ACCEL=tcg CPU=max,-erms,-fsrm TCG_CMDLINE=norandmaps
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qE '\b(vmx|svm)\b' /proc/cpuinfo; then
  ACCEL=kvm CPU=host TCG_CMDLINE=
fi
ARGS=(-accel "$ACCEL" -cpu "$CPU" -smp 2 -m "$MEM"
  -nodefaults -display none -serial mon:stdio -no-reboot
  -kernel "$IMAGE/vmlinux" -initrd "$IMAGE/initrd"
  -append "console=ttyS0 panic=-1 cryptomgr.notests rootfstype=ramfs rancher.cloud_init.datasources=[configdrive] rancher.state.autoformat=[/dev/vda] rancher.autologin=ttyS0 $TCG_CMDLINE ${CMDLINE:-}"
  -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22" -device virtio-net-pci,netdev=n0
  -device virtio-rng-pci)
# The state disk is vda (rancher.state.autoformat names it), the config
# drive vdb.
if [ "${STATE:-1}" = 1 ]; then
  ARGS+=(-drive "file=$RUN/state.img,if=virtio,format=raw")
fi
ARGS+=(-drive "file=$RUN/config-drive.iso,if=virtio,format=raw,readonly=on")
cat <<M
Booting Berth with $ACCEL ($( [ $ACCEL = kvm ] && echo "hardware virtualisation" || echo "software emulation: no usable KVM here; slower" )), ${MEM} MiB.
When the console says "Berth is up", log in from another terminal:

    ssh -i $RUN/id_ed25519 -p $SSH_PORT rancher@127.0.0.1

The console below is a root shell (rancher.autologin=ttyS0). Ctrl-A X quits qemu;
'poweroff' in the guest shuts down cleanly. State persists in $RUN/state.img.
M
exec qemu-system-x86_64 "${ARGS[@]}"
