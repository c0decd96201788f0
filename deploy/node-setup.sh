#!/bin/sh
# regcache node setup: point a container runtime at regcache, as a proxy, a mirror, or both.
# Idempotent: running it twice changes nothing the second time. POSIX sh, no bashisms.
# Options: see usage() below, or run it with --help.
set -eu

# @regcache-defaults@
PROXY="${DEFAULT_PROXY:-}"
MIRROR="${DEFAULT_MIRROR:-}"
CA="${DEFAULT_CA:-}"
CA_SHA256="${DEFAULT_CA_SHA256:-}"
CA_NEXT=""
MODE=proxy
RUNTIME=containerd
MIRROR_REGISTRIES="docker.io,quay.io,ghcr.io,registry.k8s.io,gcr.io"
NO_PROXY_LIST="localhost,127.0.0.1,::1,.svc,.cluster.local,10.96.0.0/12,10.244.0.0/16"
RESTART=0
UNINSTALL=0
ROOT=""
OS=""

# A here-document, not the comments of "$0": piped to sh (curl .../setup/node.sh | sh -s -- --help),
# the script has no file to read them from.
usage() {
  cat <<'USAGE'
regcache node setup: point a container runtime at regcache, as a proxy, a mirror, or both.
Idempotent: running it twice changes nothing the second time.

  node-setup.sh [--mode proxy|mirror|both] [--proxy http://10.96.0.50:3128]
                [--mirror https://10.96.0.50:5443] --ca /path/ca.crt [--ca-sha256 FINGERPRINT]
                [--ca-next FILE|URL] [--runtime containerd|docker|crio] [--no-proxy LIST]
                [--mirror-registries LIST] [--restart] [--uninstall] [--root DIR] [--os debian|rhel]

  --mode MODE         proxy (default): the system trusts regcache's CA and the runtime gets
                      HTTPS_PROXY; mirror: the runtime asks regcache first and falls back to the
                      registry (containerd: certs.d/_default, every registry; crio:
                      registries.conf.d, --mirror-registries; docker: registry-mirrors, Docker
                      Hub only), trusting the CA for the mirror alone; both: the two
  --proxy URL         regcache's proxy URL, written as HTTPS_PROXY for the runtime (proxy, both)
  --mirror URL        regcache's mirror URL, scheme and host:port only (mirror, both)
  --mirror-registries LIST
                      crio: the registries asked at the mirror first (default: docker.io,
                      quay.io, ghcr.io, registry.k8s.io, gcr.io)
  --ca FILE|URL       regcache's root CA: in the system trust store (proxy, both) and beside
                      the mirror's configuration (an https:// mirror)
  --ca-sha256 HEX     refuse a --ca whose SHA-256 fingerprint differs (`regcache ca fingerprint`
                      prints it; hex, colons optional, any case): nothing is installed then
  --ca-next FILE|URL  during a CA rotation, also trust the CA regcache switches to (in the system
                      trust store and the mirror's CA file); without it, a CA an earlier
                      --ca-next installed is removed
  --runtime NAME      containerd (default), docker or crio
  --no-proxy LIST     NO_PROXY for the runtime: the cluster's own CIDRs and domains
  --restart           restart the runtime when anything changed (it reads both at start)
  --uninstall         remove what this script wrote for --runtime, whatever the mode was
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
    --mode) MODE="${2:?--mode needs proxy, mirror or both}"; shift 2 ;;
    --proxy) PROXY="${2:?--proxy needs a URL}"; shift 2 ;;
    --mirror) MIRROR="${2:?--mirror needs a URL}"; shift 2 ;;
    --mirror-registries) MIRROR_REGISTRIES="${2:?--mirror-registries needs a list}"; shift 2 ;;
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
case "$MODE" in proxy|mirror|both) ;; *) die "--mode must be proxy, mirror or both" ;; esac
case "$PROXY" in http://*|https://*|"") ;; *) die "--proxy must be an http:// or https:// URL" ;; esac
# The mirror's scheme and authority (host:port), nothing else: the runtimes add the /v2/ path.
case "$MIRROR" in
  "") MIRROR_AUTHORITY="" ;;
  http://*|https://*)
    MIRROR_AUTHORITY="${MIRROR#*://}"; MIRROR_AUTHORITY="${MIRROR_AUTHORITY%/}"
    case "$MIRROR_AUTHORITY" in ""|*/*|*[!A-Za-z0-9.:\[\]-]*) die "--mirror must be a URL without a path, such as https://10.96.0.50:5443, got $MIRROR" ;; esac
    MIRROR="${MIRROR%%://*}://$MIRROR_AUTHORITY"
    ;;
  *) die "--mirror must be an http:// or https:// URL, got $MIRROR" ;;
esac
case "$MIRROR_REGISTRIES" in *[!A-Za-z0-9.:,_-]*) die "--mirror-registries must be a comma-separated list of registry hosts, got $MIRROR_REGISTRIES" ;; esac
# Compared as lowercase hex without colons, the form sha256sum prints.
WANT_SHA256="$(printf '%s' "$CA_SHA256" | tr -d ':' | tr 'A-F' 'a-f')"
case "$WANT_SHA256" in *[!0-9a-f]*) die "--ca-sha256 must be a SHA-256 fingerprint in hex, got $CA_SHA256" ;; esac
[ -z "$WANT_SHA256" ] || [ ${#WANT_SHA256} -eq 64 ] || die "--ca-sha256 must be 64 hex digits (colons optional), got $CA_SHA256"

# Only the proxy needs the CA in the system's trust: a mirror is trusted for its own address alone.
if [ "$MODE" != mirror ] || [ "$UNINSTALL" -eq 1 ]; then
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
fi
DROPIN_DIR="$ROOT/etc/systemd/system/$RUNTIME.service.d"
DROPIN="$DROPIN_DIR/http-proxy.conf"
# What marks a file as this script's: it never overwrites or removes one without it.
MARK="# Written by regcache node-setup.sh"
HOSTS_DIR="$ROOT/etc/containerd/certs.d/_default"
REGISTRIES_CONF="$ROOT/etc/containers/registries.conf.d/50-regcache-mirror.conf"
DAEMON_JSON="$ROOT/etc/docker/daemon.json"
# Where each runtime looks for a registry's own CA: containers/image and Docker name the directory host:port.
case "$RUNTIME" in
  crio) CERTS_D="$ROOT/etc/containers/certs.d" ;;
  docker) CERTS_D="$ROOT/etc/docker/certs.d" ;;
  *) CERTS_D="" ;;
esac
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

# put with the text as an argument: a pipe into put would run it in a subshell, losing CHANGED.
put_text() {
  put "$1" <<PUT_TEXT
$2
PUT_TEXT
}

remove() {
  if [ -e "$1" ]; then
    rm -f "$1"
    CHANGED=1
    echo "removed: $1"
  fi
}

# A file this script may write: absent, or marked as its own.
ours_or_absent() {
  [ ! -e "$1" ] || head -n 1 "$1" | grep -qF "$MARK" || die "$1 exists and was not written by node-setup.sh: merge the mirror into it by hand (docs/mirror-mode.md)"
}

remove_ours() {
  if [ -e "$1" ] && head -n 1 "$1" | grep -qF "$MARK"; then remove "$1"; fi
}

# daemon.json is the operator's file too: the mirror goes in as one exact piece, `"registry-mirrors":
# [URL], ` right after the first "{" (or as the whole file when there is none), and a note of what
# went in lets uninstall take out that piece alone.
DOCKER_NOTE="$ROOT/var/lib/regcache-setup/docker-registry-mirrors"

docker_mirror_add() {
  piece="\"registry-mirrors\": [\"$MIRROR\"]"
  if [ -f "$DOCKER_NOTE" ] && [ -f "$DAEMON_JSON" ] && grep -qF "$piece" "$DAEMON_JSON"; then
    echo "unchanged: $DAEMON_JSON"
  elif [ ! -s "$DAEMON_JSON" ] || [ "$(tr -d ' \t\r\n' < "$DAEMON_JSON")" = "{}" ]; then
    put_text "$DAEMON_JSON" "{$piece}"
    put_text "$DOCKER_NOTE" "file $MIRROR"
  elif grep -q '"registry-mirrors"' "$DAEMON_JSON"; then
    die "$DAEMON_JSON already lists registry-mirrors: add $MIRROR to it by hand"
  else
    [ "$(tr -d ' \t\r\n' < "$DAEMON_JSON" | cut -c1)" = "{" ] || die "$DAEMON_JSON does not hold a JSON object"
    put_text "$DAEMON_JSON" "$(awk -v piece="$piece, " 'done || !/\{/ { print; next } { i = index($0, "{"); print substr($0, 1, i) piece substr($0, i + 1); done = 1 }' "$DAEMON_JSON")"
    put_text "$DOCKER_NOTE" "piece $MIRROR"
  fi
}

docker_mirror_remove() {
  [ -f "$DOCKER_NOTE" ] || return 0
  read -r kind url < "$DOCKER_NOTE"
  piece="\"registry-mirrors\": [\"$url\"]"
  if [ ! -f "$DAEMON_JSON" ]; then
    :
  elif [ "$kind" = file ] && [ "$(cat "$DAEMON_JSON")" = "{$piece}" ]; then
    remove "$DAEMON_JSON"
  elif [ "$kind" = piece ] && grep -qF "$piece, " "$DAEMON_JSON"; then
    put_text "$DAEMON_JSON" "$(awk -v piece="$piece, " '{ i = index($0, piece); if (i) $0 = substr($0, 1, i - 1) substr($0, i + length(piece)); print }' "$DAEMON_JSON")"
  else
    echo "left alone: $DAEMON_JSON no longer holds what node-setup.sh put in ($piece)"
  fi
  remove "$DOCKER_NOTE"
}

# The mirror's CA for the runtime's per-registry certs.d (containers/image, Docker), named so that uninstall finds it.
mirror_ca_add() {
  case "$MIRROR" in https://*) ;; *) return 0 ;; esac
  if [ -n "$CERTS_D" ]; then
    put_text "$CERTS_D/$MIRROR_AUTHORITY/regcache-ca.crt" "$MIRROR_CA_PEM"
  fi
}

mirror_ca_remove() {
  [ -n "$CERTS_D" ] || return 0
  for f in "$CERTS_D"/*/regcache-ca.crt; do
    [ -e "$f" ] || continue
    remove "$f"
    rmdir "$(dirname "$f")" 2>/dev/null || true
  done
}

containerd_hosts_toml() {
  echo "$MARK: every registry is asked at the regcache mirror first;"
  echo "# containerd falls back to the registry itself when the mirror does not answer."
  echo "[host.\"$MIRROR\"]"
  echo '  capabilities = ["pull", "resolve"]'
  # Relative to this directory (containerd's hosts.toml): the CA travels with the file.
  case "$MIRROR" in https://*) echo '  ca = "regcache-ca.crt"' ;; esac
}

containerd_mirror() {
  ours_or_absent "$HOSTS_DIR/hosts.toml"
  put_text "$HOSTS_DIR/hosts.toml" "$(containerd_hosts_toml)"
  case "$MIRROR" in https://*) put_text "$HOSTS_DIR/regcache-ca.crt" "$MIRROR_CA_PEM" ;; esac
  config="$ROOT/etc/containerd/config.toml"
  if [ ! -f "$config" ] || ! grep -q 'config_path *= *"[^"]*/etc/containerd/certs.d' "$config"; then
    echo "note: containerd reads $HOSTS_DIR only with config_path = \"/etc/containerd/certs.d\" under [plugins.\"io.containerd.grpc.v1.cri\".registry] in /etc/containerd/config.toml (containerd 2 sets it by default); add it and restart containerd" >&2
  fi
}

crio_registries_conf() {
  echo "$MARK: these registries are asked at the regcache mirror first;"
  echo "# containers/image falls back to the registry itself when the mirror does not answer."
  for registry in $(echo "$MIRROR_REGISTRIES" | tr ',' ' '); do
    echo ""
    echo "[[registry]]"
    echo "prefix = \"$registry\""
    echo "location = \"$registry\""
    echo "[[registry.mirror]]"
    # The registry as the location's first path segment, where regcache reads it; a reference
    # cannot hold a colon there, so a port is written host_port.
    echo "location = \"$MIRROR_AUTHORITY/$(echo "$registry" | sed 's/:\([0-9]*\)$/_\1/')\""
    case "$MIRROR" in http://*) echo "insecure = true" ;; esac
  done
}

crio_mirror() {
  ours_or_absent "$REGISTRIES_CONF"
  put_text "$REGISTRIES_CONF" "$(crio_registries_conf)"
  mirror_ca_add
}

if [ "$UNINSTALL" -eq 1 ]; then
  PROXY_CHANGED=0
  remove "$DROPIN"
  rmdir "$DROPIN_DIR" 2>/dev/null || true
  remove "$ANCHOR"
  remove "$NEXT_ANCHOR"
  [ "$CHANGED" -eq 0 ] || { PROXY_CHANGED=1; run "$TRUST_CMD"; }
  case "$RUNTIME" in
    containerd) remove_ours "$HOSTS_DIR/hosts.toml"; remove "$HOSTS_DIR/regcache-ca.crt"; rmdir "$HOSTS_DIR" 2>/dev/null || true ;;
    crio) remove_ours "$REGISTRIES_CONF"; mirror_ca_remove ;;
    docker) docker_mirror_remove; mirror_ca_remove ;;
  esac
  if [ "$CHANGED" -eq 1 ]; then
    if [ "$PROXY_CHANGED" -eq 1 ] || [ "$RUNTIME" != containerd ]; then
      if [ "$RESTART" -eq 1 ]; then run "systemctl daemon-reload && systemctl restart $RUNTIME"; else echo "restart $RUNTIME to finish: systemctl daemon-reload && systemctl restart $RUNTIME"; fi
    fi
  fi
  exit 0
fi

if [ "$MODE" != mirror ]; then [ -n "$PROXY" ] || die "--proxy is required with --mode $MODE"; fi
if [ "$MODE" != proxy ]; then [ -n "$MIRROR" ] || die "--mirror is required with --mode $MODE"; fi
NEED_CA=0
if [ "$MODE" != mirror ]; then NEED_CA=1; fi
case "$MODE:$MIRROR" in proxy:*) ;; *:https://*) NEED_CA=1 ;; esac

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

if [ "$NEED_CA" -eq 1 ]; then
  [ -n "$CA" ] || die "--ca is required"
  CA_PEM="$(read_ca "$CA")" || exit 2
  # The mirror's own CA file holds both CAs during a rotation: its leaf is signed by either.
  MIRROR_CA_PEM="$CA_PEM"
  if [ -n "$CA_NEXT" ]; then
    NEXT_PEM="$(read_ca "$CA_NEXT")" || exit 2
    MIRROR_CA_PEM="$CA_PEM
$NEXT_PEM"
  fi
fi

# Hex as openssl and `regcache ca fingerprint` print it: uppercase pairs joined by colons.
colons() {
  printf '%s' "$1" | tr 'a-f' 'A-F' | sed 's/../&:/g; s/:$//'
}

if [ -n "$WANT_SHA256" ] && [ "$NEED_CA" -eq 1 ]; then
  command -v sha256sum >/dev/null 2>&1 && command -v base64 >/dev/null 2>&1 || die "sha256sum and base64 are needed for --ca-sha256"
  # A second certificate would be installed beside the pinned one without being checked.
  [ "$(printf '%s\n' "$CA_PEM" | grep -c 'BEGIN CERTIFICATE')" -eq 1 ] || die "$CA holds more than one certificate; --ca-sha256 pins exactly one"
  # The fingerprint is SHA-256 over the certificate's DER: the base64 between the PEM markers, decoded.
  HAVE_SHA256="$(printf '%s\n' "$CA_PEM" | tr -d '\r' | awk '/-----END CERTIFICATE-----/ { exit } inside { print } /-----BEGIN CERTIFICATE-----/ { inside = 1 }' | base64 -d | sha256sum | cut -d' ' -f1)"
  [ "$HAVE_SHA256" = "$WANT_SHA256" ] || die "$CA has SHA-256 fingerprint $(colons "$HAVE_SHA256"), expected $(colons "$WANT_SHA256") (--ca-sha256): nothing installed"
fi

PROXY_CHANGED=0
if [ "$MODE" != mirror ]; then
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
  # The runtime reaches the mirror directly: through the proxy, its port would be refused.
  [ "$MODE" = proxy ] || NO_PROXY_LIST="$NO_PROXY_LIST,$(echo "$MIRROR_AUTHORITY" | sed 's/:[0-9]*$//; s/^\[//; s/\]$//')"
  put "$DROPIN" <<DROPIN
# Written by regcache node-setup.sh: pull images through regcache.
[Service]
Environment="HTTPS_PROXY=$PROXY"
Environment="https_proxy=$PROXY"
Environment="NO_PROXY=$NO_PROXY_LIST"
Environment="no_proxy=$NO_PROXY_LIST"
DROPIN
  PROXY_CHANGED=$CHANGED
fi

if [ "$MODE" != proxy ]; then
  case "$RUNTIME" in
    containerd) containerd_mirror ;;
    crio) crio_mirror ;;
    docker) docker_mirror_add; mirror_ca_add ;;
  esac
fi

if [ "$CHANGED" -eq 0 ]; then
  echo "nothing changed"
elif [ "$PROXY_CHANGED" -eq 1 ]; then
  if [ "$RESTART" -eq 1 ]; then
    run "systemctl daemon-reload && systemctl restart $RUNTIME"
  else
    echo "restart $RUNTIME to apply: systemctl daemon-reload && systemctl restart $RUNTIME"
  fi
elif [ "$RUNTIME" = containerd ]; then
  # hosts.toml is read on every pull.
  echo "containerd reads the mirror configuration on its next pull"
elif [ "$RESTART" -eq 1 ]; then
  run "systemctl reload $RUNTIME"
else
  echo "reload $RUNTIME to apply: systemctl reload $RUNTIME"
fi
