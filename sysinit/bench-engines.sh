#!/bin/bash
# Benchmarks the engines with the real ros binary (as root, dockerd needed):
# System Docker start to 7 services running (shaped like the defaults, with
# harmless commands), first boot (images loaded) and second boot (stamp
# present); the RSS of the process supervising them; restart latency after
# SIGKILL; shutdown time. Usage: sysinit/bench-engines.sh [bin/ros]
set -euo pipefail
ROS=$(realpath "${1:-bin/ros}")
R=$(mktemp -d /tmp/berth-bench-XXXX)
IMG=$R/images
cleanup() { umount "$R/var/run/system-docker/netns/default" 2>/dev/null || true; rm -rf "$R"; }
trap cleanup EXIT
go run ./platforms/sysimages/cmd/sysimages -ros "$ROS" -out "$IMG" -version bench >/dev/null
mkdir -p "$R/var/lib/rancher/conf"
loop="trap 'exit 0' TERM; while :; do sleep 1; done"
svc() { # name after extra
  echo "    $1: {image: 'berth/${4:-base}:\${VERSION}', net: host, restart: always, labels: {io.rancher.os.after: '$2'$3}, command: ${5:-[sh, -c, \"$loop\"]}}"
}
{
  echo "rancher:"
  echo "  system_docker: {host: [unix://$R/var/run/system-docker.sock], data_root: $R/var/lib/system-docker, exec_root: $R/var/run/system-docker, pid_file: $R/var/run/system-docker.pid}"
  echo "  services_include: {udev: false, network: false, cloud-init-execute: false, ntp: false, syslog: false, console: false, docker: false}"
  echo "  services:"
  echo "    b-udev: {image: 'berth/base:\${VERSION}', net: host, restart: always, command: [sh, -c, \"$loop\"]}"
  svc b-network b-udev ""
  svc b-cloud-init-execute b-network ", io.rancher.os.detach: 'false'" base "[sh, -c, 'true']"
  svc b-ntp b-cloud-init-execute ""
  svc b-syslog b-udev ""
  svc b-console b-cloud-init-execute "" console "[dropbear, -F, -E, -s, -w, -R, -p, '127.0.0.1:22023']"
  svc b-docker b-cloud-init-execute ""
} > "$R/var/lib/rancher/conf/cloud-config.yml"
D="docker -H unix://$R/var/run/system-docker.sock"
for boot in first second; do
  "$ROS" --root "$R" engine run --images "$IMG" --version bench > "$R/out" 2> "$R/err" &
  P=$!
  for _ in $(seq 600); do grep -q "engines up" "$R/out" 2>/dev/null && break; sleep 0.1; done
  echo "$boot boot: $(cat "$R/out")"
  sleep 2
  echo "$boot boot: supervising process $(grep VmRSS /proc/$P/status | tr -s ' \t' ' ')"
  CP=$($D inspect -f '{{.State.Pid}}' b-ntp)
  T0=$(date +%s%N); kill -9 "$CP"
  while :; do S=$($D inspect -f '{{.State.Running}} {{.State.Pid}}' b-ntp); [ "${S%% *}" = true ] && [ "$S" != "true $CP" ] && break; sleep 0.01; done
  echo "$boot boot: restart after SIGKILL $(( ($(date +%s%N)-T0)/1000000 )) ms (polled with the docker CLI)"
  sleep 1
  kill -TERM "$P"; T1=$(date +%s%N)
  while kill -0 "$P" 2>/dev/null; do sleep 0.05; done
  echo "$boot boot: shutdown $(( ($(date +%s%N)-T1)/1000000 )) ms"
  umount "$R/var/run/system-docker/netns/default" 2>/dev/null || true
done
