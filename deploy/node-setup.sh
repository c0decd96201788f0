#!/bin/sh
# regcache node setup: trust regcache's root CA and point a container runtime at the proxy.
# Idempotent: running it twice changes nothing the second time. POSIX sh, no bashisms.
#
#   node-setup.sh --proxy http://10.96.0.50:3128 --ca /path/ca.crt [--runtime containerd|docker|crio]
#                 [--no-proxy LIST] [--restart] [--uninstall] [--root DIR] [--os debian|rhel]
#
# --root DIR writes below DIR instead of / and runs no system command (for tests and image builds).
set -eu

# @regcache-defaults@
PROXY="${DEFAULT_PROXY:-}"
CA="${DEFAULT_CA:-}"
RUNTIME=containerd
NO_PROXY_LIST="localhost,127.0.0.1,::1,.svc,.cluster.local,10.96.0.0/12,10.244.0.0/16"
RESTART=0
UNINSTALL=0
ROOT=""
OS=""

usage() {
  sed -n '2,9p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

die() {
  echo "node-setup: $*" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --proxy) PROXY="${2:?--proxy needs a URL}"; shift 2 ;;
    --ca) CA="${2:?--ca needs a file or URL}"; shift 2 ;;
    --runtime) RUNTIME="${2:?--runtime needs a name}"; shift 2 ;;
    --no-proxy) NO_PROXY_LIST="${2?--no-proxy needs a list}"; shift 2 ;;
    --restart) RESTART=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --os) OS="${2:?--os needs debian or rhel}"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

case "$RUNTIME" in containerd|docker|crio) ;; *) die "--runtime must be containerd, docker or crio" ;; esac
case "$PROXY" in http://*|https://*|"") ;; *) die "--proxy must be an http:// or https:// URL" ;; esac

if [ -z "$OS" ]; then
  if [ -e "$ROOT/etc/debian_version" ] || command -v update-ca-certificates >/dev/null 2>&1; then OS=debian
  elif [ -e "$ROOT/etc/redhat-release" ] || command -v update-ca-trust >/dev/null 2>&1; then OS=rhel
  else die "cannot tell how this system trusts CAs; pass --os debian or --os rhel"
  fi
fi
case "$OS" in
  debian) ANCHOR="$ROOT/usr/local/share/ca-certificates/regcache.crt"; TRUST_CMD="update-ca-certificates" ;;
  rhel) ANCHOR="$ROOT/etc/pki/ca-trust/source/anchors/regcache.crt"; TRUST_CMD="update-ca-trust extract" ;;
  *) die "--os must be debian or rhel" ;;
esac
DROPIN_DIR="$ROOT/etc/systemd/system/$RUNTIME.service.d"
DROPIN="$DROPIN_DIR/http-proxy.conf"
CHANGED=0

run() {
  if [ -n "$ROOT" ]; then
    echo "skipped (--root): $*"
  else
    echo "running: $*"
    sh -c "$*"
  fi
}

# Writes stdin to $1 only when the content differs, so reruns are no-ops.
put() {
  tmp="$1.regcache-tmp.$$"
  mkdir -p "$(dirname "$1")"
  cat > "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
    rm -f "$tmp"
    echo "unchanged: $1"
  else
    chmod 0644 "$tmp"
    mv "$tmp" "$1"
    CHANGED=1
    echo "wrote: $1"
  fi
}

remove() {
  if [ -e "$1" ]; then
    rm -f "$1"
    CHANGED=1
    echo "removed: $1"
  fi
}

if [ "$UNINSTALL" -eq 1 ]; then
  remove "$DROPIN"
  rmdir "$DROPIN_DIR" 2>/dev/null || true
  remove "$ANCHOR"
  if [ "$CHANGED" -eq 1 ]; then
    run "$TRUST_CMD"
    if [ "$RESTART" -eq 1 ]; then run "systemctl daemon-reload && systemctl restart $RUNTIME"; else echo "restart $RUNTIME to finish: systemctl daemon-reload && systemctl restart $RUNTIME"; fi
  fi
  exit 0
fi

[ -n "$PROXY" ] || die "--proxy is required"
[ -n "$CA" ] || die "--ca is required"

case "$CA" in
  http://*|https://*)
    command -v curl >/dev/null 2>&1 || die "curl is needed to download $CA"
    CA_PEM="$(curl -fsS "$CA")" || die "cannot download $CA"
    ;;
  *)
    [ -r "$CA" ] || die "cannot read CA file $CA"
    CA_PEM="$(cat "$CA")"
    ;;
esac
case "$CA_PEM" in *"BEGIN CERTIFICATE"*) ;; *) die "$CA is not a PEM certificate" ;; esac

# A here-document, not a pipe: put must run in this shell to update CHANGED.
put "$ANCHOR" <<CA_PEM
$CA_PEM
CA_PEM
if [ "$CHANGED" -eq 1 ]; then run "$TRUST_CMD"; fi

put "$DROPIN" <<DROPIN
# Written by regcache node-setup.sh: pull images through regcache.
[Service]
Environment="HTTPS_PROXY=$PROXY"
Environment="https_proxy=$PROXY"
Environment="NO_PROXY=$NO_PROXY_LIST"
Environment="no_proxy=$NO_PROXY_LIST"
DROPIN

if [ "$CHANGED" -eq 1 ]; then
  if [ "$RESTART" -eq 1 ]; then
    run "systemctl daemon-reload && systemctl restart $RUNTIME"
  else
    echo "restart $RUNTIME to apply: systemctl daemon-reload && systemctl restart $RUNTIME"
  fi
else
  echo "nothing changed"
fi
