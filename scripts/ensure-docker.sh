#!/usr/bin/env bash
# Make sure a Docker engine answers and the offline busybox test image exists, and start the
# test hosts (scripts/ensure-hosts.sh: a second engine over TLS, an sshd).
# Idempotent: reuses a running engine; installs and starts one only when needed.
set -euo pipefail

IMAGE="${OPENPANEL_WS_TEST_IMAGE:-openpanel-ws-test:busybox}"
SOCK=/var/run/docker.sock
STATE_DIR="${OPENPANEL_WS_ENGINE_STATE:-/var/tmp/openpanel-ws-engine}"

log() { echo "[ensure-docker] $*" >&2; }

engine_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! engine_up; then
  if [ "$(id -u)" != 0 ]; then
    log "no Docker engine answers and I am not root: start one, or run as root"; exit 1
  fi
  if ! command -v dockerd >/dev/null 2>&1 || [ ! -x /bin/busybox ]; then
    log "installing docker.io and busybox-static"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io busybox-static >/dev/null
  fi
  mkdir -p "$STATE_DIR"
  log "starting dockerd"
  # setsid: the engine must outlive the shell that started it (make, CI).
  setsid nohup dockerd --host unix://$SOCK >"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/dockerd.pid"
  # Marks an engine this project started: only such an engine may be restarted by tests.
  touch "$STATE_DIR/started-by-openpanel-ws"
  for _ in $(seq 1 120); do engine_up && break; sleep 0.5; done
  engine_up || { log "dockerd did not come up; last log lines:"; tail -20 "$STATE_DIR/dockerd.log" >&2; exit 1; }
fi
log "engine $(docker version --format '{{.Server.Version}}') at ${DOCKER_HOST:-unix://$SOCK}"

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  [ -x /bin/busybox ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; }
  log "building offline test image $IMAGE from /bin/busybox"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root"/bin "$root"/tmp "$root"/proc "$root"/sys "$root"/dev "$root"/etc "$root"/root
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
fi
log "test image $IMAGE ready"

# The test hosts: a second engine (unix socket and TCP + TLS), an sshd reaching it, their
# certificates and keys, and the descriptor /var/tmp/openpanel-ws-hosts/hosts.json.
bash "$(dirname "$0")/ensure-hosts.sh"

# The browser tests (tests/browser) drive Debian's Chromium; the JS client's tests need
# Node 20+ (global WebSocket with --experimental-websocket). Installed when missing.
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ! command -v node >/dev/null 2>&1 || [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 20 ]; then
  need+=(nodejs)
fi
command -v npm >/dev/null 2>&1 || need+=(npm)  # make js-tools: npm ci in clients/js
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing ${need[*]} and I am not root: install them (apt-get install ${need[*]})"; exit 1
  fi
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 20 ]; then
  log "warning: node $(node --version 2>/dev/null) is older than 20; the JS client's tests need Node 20+"
fi
log "chromium $(chromium --version 2>/dev/null | awk '{print $2}'), node $(node --version)"
