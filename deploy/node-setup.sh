#!/bin/sh
# regcache node setup: trust regcache's root CA and point a container runtime at the proxy.
# Idempotent: running it twice changes nothing the second time. POSIX sh, no bashisms.
# Options: see usage() below, or run it with --help.
set -eu

# @regcache-defaults@
PROXY="${DEFAULT_PROXY:-}"
CA="${DEFAULT_CA:-}"
CA_SHA256="${DEFAULT_CA_SHA256:-}"
CA_NEXT=""
RUNTIME=containerd
NO_PROXY_LIST="localhost,127.0.0.1,::1,.svc,.cluster.local,10.96.0.0/12,10.244.0.0/16"
RESTART=0
UNINSTALL=0
ROOT=""
OS=""

# A here-document, not the comments of "$0": piped to sh (curl .../setup/node.sh | sh -s -- --help),
# the script has no file to read them from.
usage() {
  cat <<'USAGE'
regcache node setup: trust regcache's root CA and point a container runtime at the proxy.
Idempotent: running it twice changes nothing the second time.

  node-setup.sh --proxy http://10.96.0.50:3128 --ca /path/ca.crt [--ca-sha256 FINGERPRINT]
                [--ca-next FILE|URL] [--runtime containerd|docker|crio] [--no-proxy LIST]
                [--restart] [--uninstall] [--root DIR] [--os debian|rhel]

  --proxy URL         regcache's URL, written as HTTPS_PROXY for the runtime
  --ca FILE|URL       regcache's root CA, installed in the system trust store
  --ca-sha256 HEX     refuse a --ca whose SHA-256 fingerprint differs (`regcache ca fingerprint`
                      prints it; hex, colons optional, any case): nothing is installed then
  --ca-next FILE|URL  during a CA rotation, also trust the CA regcache switches to; without it,
                      a CA an earlier --ca-next installed is removed
  --runtime NAME      containerd (default), docker or crio
  --no-proxy LIST     NO_PROXY for the runtime: the cluster's own CIDRs and domains
  --restart           restart the runtime when anything changed (it reads both at start)
  --uninstall         remove the drop-in and the CAs this script installed
  --root DIR          write below DIR instead of / and run no system command (tests, image builds)
  --os debian|rhel    how this system trusts CAs (default: detected)
USAGE
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
    --ca-sha256) CA_SHA256="${2:?--ca-sha256 needs a fingerprint}"; shift 2 ;;
    --ca-next) CA_NEXT="${2:?--ca-next needs a file or URL}"; shift 2 ;;
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
# Compared as lowercase hex without colons, the form sha256sum prints.
WANT_SHA256="$(printf '%s' "$CA_SHA256" | tr -d ':' | tr 'A-F' 'a-f')"
case "$WANT_SHA256" in *[!0-9a-f]*) die "--ca-sha256 must be a SHA-256 fingerprint in hex, got $CA_SHA256" ;; esac
[ -z "$WANT_SHA256" ] || [ ${#WANT_SHA256} -eq 64 ] || die "--ca-sha256 must be 64 hex digits (colons optional), got $CA_SHA256"

if [ -z "$OS" ]; then
  if [ -e "$ROOT/etc/debian_version" ] || command -v update-ca-certificates >/dev/null 2>&1; then OS=debian
  elif [ -e "$ROOT/etc/redhat-release" ] || command -v update-ca-trust >/dev/null 2>&1; then OS=rhel
  else die "cannot tell how this system trusts CAs; pass --os debian or --os rhel"
  fi
fi
case "$OS" in
  debian) ANCHORS="$ROOT/usr/local/share/ca-certificates"; TRUST_CMD="update-ca-certificates" ;;
  rhel) ANCHORS="$ROOT/etc/pki/ca-trust/source/anchors"; TRUST_CMD="update-ca-trust extract" ;;
  *) die "--os must be debian or rhel" ;;
esac
ANCHOR="$ANCHORS/regcache.crt"
NEXT_ANCHOR="$ANCHORS/regcache-next.crt"
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
  remove "$NEXT_ANCHOR"
  if [ "$CHANGED" -eq 1 ]; then
    run "$TRUST_CMD"
    if [ "$RESTART" -eq 1 ]; then run "systemctl daemon-reload && systemctl restart $RUNTIME"; else echo "restart $RUNTIME to finish: systemctl daemon-reload && systemctl restart $RUNTIME"; fi
  fi
  exit 0
fi

[ -n "$PROXY" ] || die "--proxy is required"
[ -n "$CA" ] || die "--ca is required"

# The PEM of a CA given as a file or a URL; exits when it cannot be had or is not a certificate.
read_ca() {
  case "$1" in
    http://*|https://*)
      command -v curl >/dev/null 2>&1 || die "curl is needed to download $1"
      pem="$(curl -fsS "$1")" || die "cannot download $1"
      ;;
    *)
      [ -r "$1" ] || die "cannot read CA file $1"
      pem="$(cat "$1")"
      ;;
  esac
  case "$pem" in *"BEGIN CERTIFICATE"*) ;; *) die "$1 is not a PEM certificate" ;; esac
  printf '%s\n' "$pem"
}

CA_PEM="$(read_ca "$CA")" || exit 2
if [ -n "$CA_NEXT" ]; then NEXT_PEM="$(read_ca "$CA_NEXT")" || exit 2; fi

# Hex as openssl and `regcache ca fingerprint` print it: uppercase pairs joined by colons.
colons() {
  printf '%s' "$1" | tr 'a-f' 'A-F' | sed 's/../&:/g; s/:$//'
}

if [ -n "$WANT_SHA256" ]; then
  command -v sha256sum >/dev/null 2>&1 && command -v base64 >/dev/null 2>&1 || die "sha256sum and base64 are needed for --ca-sha256"
  # A second certificate would be installed beside the pinned one without being checked.
  [ "$(printf '%s\n' "$CA_PEM" | grep -c 'BEGIN CERTIFICATE')" -eq 1 ] || die "$CA holds more than one certificate; --ca-sha256 pins exactly one"
  # The fingerprint is SHA-256 over the certificate's DER: the base64 between the PEM markers, decoded.
  HAVE_SHA256="$(printf '%s\n' "$CA_PEM" | tr -d '\r' | awk '/-----END CERTIFICATE-----/ { exit } inside { print } /-----BEGIN CERTIFICATE-----/ { inside = 1 }' | base64 -d | sha256sum | cut -d' ' -f1)"
  [ "$HAVE_SHA256" = "$WANT_SHA256" ] || die "$CA has SHA-256 fingerprint $(colons "$HAVE_SHA256"), expected $(colons "$WANT_SHA256") (--ca-sha256): nothing installed"
fi

# A here-document, not a pipe: put must run in this shell to update CHANGED.
put "$ANCHOR" <<CA_PEM
$CA_PEM
CA_PEM
# A CA rotation overlaps the two CAs: the next one is trusted beside the current one until
# regcache has switched and every node trusts the new CA as its current one.
if [ -n "$CA_NEXT" ]; then
  put "$NEXT_ANCHOR" <<NEXT_PEM
$NEXT_PEM
NEXT_PEM
else
  remove "$NEXT_ANCHOR"
fi
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
