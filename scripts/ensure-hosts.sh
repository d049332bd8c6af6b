#!/usr/bin/env bash
# The test hosts (docs/hosts.md "The test hosts"): a second Docker engine ("engine2") on this
# machine, reachable over its own unix socket and over TCP + TLS on 127.0.0.1, an sshd on
# 127.0.0.1 whose login user reaches engine2's socket, the certificates and keys they need,
# and a descriptor, hosts.json, that tests and the bench read instead of hard-coding paths.
#
# Called by scripts/ensure-docker.sh (after the main engine and the test image are ready).
# Idempotent: reuses what runs and what exists; a warm run only checks. Serialised with flock,
# as several `make test` may start at once.
#
#   bash scripts/ensure-hosts.sh                  # start what is missing
#   bash scripts/ensure-hosts.sh restart-engine2  # stop engine2 (SIGTERM, wait), start it again
#   bash scripts/ensure-hosts.sh stop-engine2     # stop engine2 only
set -euo pipefail

IMAGE="${OPENPANEL_WS_TEST_IMAGE:-openpanel-ws-test:busybox}"
ROOT="${OPENPANEL_WS_HOSTS_DIR:-/var/tmp/openpanel-ws-hosts}"
E2="$ROOT/engine2"
E2_SOCK="$E2/docker.sock"
E2_TCP_PORT=12376
# exec-root holds runtime state (containerd's socket, shims, netns): keep it on /run, apart
# from the main engine's /var/run/docker, and short (unix socket paths are <= 107 bytes).
E2_EXEC=/run/openpanel-ws-engine2
E2_PID="$E2_EXEC/dockerd.pid"
E2_BRIDGE=opws-br2
E2_BRIDGE_CIDR=172.31.240.1/24
CERTS="$ROOT/certs"
SSH_DIR="$ROOT/ssh"
SSH_PORT=12222
DESCRIPTOR="$ROOT/hosts.json"

log() { echo "[ensure-hosts] $*" >&2; }
d2() { docker -H "unix://$E2_SOCK" "$@"; }
engine2_up() { d2 version --format '{{.Server.Version}}' >/dev/null 2>&1; }
engine2_tls_up() {
  docker -H "tcp://127.0.0.1:$E2_TCP_PORT" --tlsverify --tlscacert "$CERTS/client/ca.pem" \
    --tlscert "$CERTS/client/cert.pem" --tlskey "$CERTS/client/key.pem" \
    version --format '{{.Server.Version}}' >/dev/null 2>&1
}
# put FILE < content: replace FILE only if the content differs, atomically (tests may be
# reading it while another `make test` runs this script).
put() {
  local tmp; tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else chmod 644 "$tmp"; mv -f "$tmp" "$1"; fi
}
main_engine_runs() { docker run --rm "$IMAGE" true >/dev/null 2>&1; }

# --- certificates -------------------------------------------------------------------------
# One CA signs a server certificate (SAN IP:127.0.0.1, DNS:localhost, as the gateway checks
# the name) and a client certificate (dockerd --tlsverify asks for one). For the refusal
# tests: a second, unrelated CA ("wrong CA": the client cannot verify the server) and a client
# certificate of the right CA that expired in 2020 (the server refuses it). EC P-256 keys:
# fast to make. `openssl ca` is the one openssl 3.0 command that takes explicit dates.
make_cert() {  # make_cert NAME CA_NAME EXT_SECTION DAYS_OR_DATES...
  local name=$1 ca=$2 ext=$3; shift 3
  openssl ecparam -name prime256v1 -genkey -noout -out "$CERTS/$name-key.pem" 2>/dev/null
  openssl req -new -key "$CERTS/$name-key.pem" -subj "/CN=openpanel-ws-$name" \
    -out "$CERTS/$name.csr" 2>/dev/null
  openssl ca -batch -notext -config "$CERTS/openssl.cnf" -name "ca_$ca" -extensions "$ext" \
    -in "$CERTS/$name.csr" -out "$CERTS/$name-cert.pem" "$@" 2>/dev/null
  rm -f "$CERTS/$name.csr"
}

make_ca() {  # make_ca NAME
  local name=$1
  mkdir -p "$CERTS/db-$name"
  : >"$CERTS/db-$name/index.txt"
  openssl ecparam -name prime256v1 -genkey -noout -out "$CERTS/$name-key.pem" 2>/dev/null
  openssl req -x509 -new -key "$CERTS/$name-key.pem" -subj "/CN=openpanel-ws test $name" \
    -days 3650 -sha256 -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign -out "$CERTS/$name.pem" 2>/dev/null
}

ensure_certs() {
  [ -s "$CERTS/client/key.pem" ] && [ -s "$CERTS/expired/key.pem" ] && [ -s "$CERTS/wrong-ca/key.pem" ] \
    && openssl x509 -checkend 86400 -noout -in "$CERTS/server-cert.pem" >/dev/null 2>&1 && return 0
  log "making TLS certificates in $CERTS"
  rm -rf "$CERTS"; mkdir -p "$CERTS"; chmod 700 "$CERTS"
  cat >"$CERTS/openssl.cnf" <<EOF
[ca_ca]
dir = $CERTS
database = \$dir/db-ca/index.txt
new_certs_dir = \$dir/db-ca
certificate = \$dir/ca.pem
private_key = \$dir/ca-key.pem
rand_serial = yes
default_md = sha256
default_days = 3650
policy = policy_any
unique_subject = no
copy_extensions = none
[ca_wrong-ca]
dir = $CERTS
database = \$dir/db-wrong-ca/index.txt
new_certs_dir = \$dir/db-wrong-ca
certificate = \$dir/wrong-ca.pem
private_key = \$dir/wrong-ca-key.pem
rand_serial = yes
default_md = sha256
default_days = 3650
policy = policy_any
unique_subject = no
[policy_any]
commonName = supplied
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
EOF
  make_ca ca
  make_ca wrong-ca
  make_cert server ca server -days 3650
  make_cert client ca client -days 3650
  make_cert expired ca client -startdate 20200101000000Z -enddate 20200102000000Z
  # The client directories, laid out as docker's --tlsverify expects (ca.pem, cert.pem, key.pem).
  mkdir -p "$CERTS/client" "$CERTS/wrong-ca" "$CERTS/expired"
  cp "$CERTS/ca.pem" "$CERTS/client/ca.pem"
  cp "$CERTS/client-cert.pem" "$CERTS/client/cert.pem"; cp "$CERTS/client-key.pem" "$CERTS/client/key.pem"
  cp "$CERTS/wrong-ca.pem" "$CERTS/wrong-ca/ca.pem"
  cp "$CERTS/client-cert.pem" "$CERTS/wrong-ca/cert.pem"; cp "$CERTS/client-key.pem" "$CERTS/wrong-ca/key.pem"
  cp "$CERTS/ca.pem" "$CERTS/expired/ca.pem"
  cp "$CERTS/expired-cert.pem" "$CERTS/expired/cert.pem"; cp "$CERTS/expired-key.pem" "$CERTS/expired/key.pem"
  chmod 600 "$CERTS"/*-key.pem "$CERTS"/*/key.pem
}

# --- engine2 ------------------------------------------------------------------------------
ensure_bridge() {
  # Its own bridge, made here: the daemon attaches its default network to it. NEVER
  # --bridge=none: a daemon with the default bridge disabled deletes the machine's docker0,
  # and the main engine then fails every `docker run` ("could not find bridge docker0").
  if ! ip link show "$E2_BRIDGE" >/dev/null 2>&1; then
    ip link add "$E2_BRIDGE" type bridge
  fi
  ip -4 addr show dev "$E2_BRIDGE" | grep -q "${E2_BRIDGE_CIDR%/*}/" \
    || ip addr add "$E2_BRIDGE_CIDR" dev "$E2_BRIDGE"
  ip link set "$E2_BRIDGE" up
}

start_engine2() {
  mkdir -p "$E2/data" "$E2_EXEC"
  [ -s "$E2/daemon.json" ] || echo '{}' >"$E2/daemon.json"
  # A pid file left by a dockerd that is gone (machine restarted, killed -9) stops the start.
  if [ -f "$E2_PID" ] && ! kill -0 "$(cat "$E2_PID")" 2>/dev/null; then rm -f "$E2_PID"; fi
  rm -f "$E2_SOCK"
  ensure_bridge
  log "starting engine2 (unix://$E2_SOCK, tcp://127.0.0.1:$E2_TCP_PORT with TLS)"
  # What moby's "Run multiple daemons" (dockerd reference) says each daemon needs of its own:
  #   --config-file   its own (empty) file: the machine's /etc/docker/daemon.json is the main
  #                   engine's and may name hosts, a bridge, a data root
  #   --data-root     images, containers, volumes, the network database (/var/lib/docker is
  #                   the main engine's; two daemons on one data root corrupt it)
  #   --exec-root     runtime state: its containerd's socket, the shims, netns files
  #   --pidfile       the default /var/run/docker.pid is the main engine's
  #   -H              its own sockets: a unix one for tests and for the sshd's login user,
  #                   and TCP on loopback only, with --tlsverify (mutual TLS, below)
  #   --bridge        a bridge of its own (ensure_bridge; never none, see there)
  #   --iptables=false --ip-masq=false
  #                   leave the machine's iptables to the main engine: two daemons rewriting
  #                   the same DOCKER chains undo each other (engine2's containers need no
  #                   NAT: the tests only read their logs, stats and events)
  #   --containerd-namespace / --containerd-plugins-namespace
  #                   if the two daemons ever share one containerd (--containerd, or a system
  #                   containerd), their containers, images and plugins stay apart; by
  #                   default each dockerd runs its own containerd under its exec-root
  #   --tlsverify --tlscacert --tlscert --tlskey
  #                   the server certificate, and only clients with a certificate of our CA
  # setsid nohup: the engine must outlive the shell that started it (make, a test); 9>&-: it
  # must not inherit (and hold forever) the lock of this script.
  setsid nohup dockerd \
    --config-file "$E2/daemon.json" \
    --data-root "$E2/data" \
    --exec-root "$E2_EXEC" \
    --pidfile "$E2_PID" \
    -H "unix://$E2_SOCK" \
    -H "tcp://127.0.0.1:$E2_TCP_PORT" \
    --tlsverify --tlscacert "$CERTS/ca.pem" \
    --tlscert "$CERTS/server-cert.pem" --tlskey "$CERTS/server-key.pem" \
    --bridge "$E2_BRIDGE" \
    --iptables=false --ip-masq=false \
    --containerd-namespace opws-engine2 \
    --containerd-plugins-namespace opws-engine2-plugins \
    >>"$E2/dockerd.log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 1 120); do engine2_up && break; sleep 0.25; done
  engine2_up || { log "engine2 did not come up; last log lines:"; tail -20 "$E2/dockerd.log" >&2; exit 1; }
  # The check the bridge rule is for: the main engine still starts containers.
  main_engine_runs || { log "after starting engine2 the main engine cannot run $IMAGE"; exit 1; }
}

stop_engine2() {
  [ -f "$E2_PID" ] || return 0
  local pid; pid=$(cat "$E2_PID")
  kill -TERM "$pid" 2>/dev/null || { rm -f "$E2_PID"; return 0; }
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then log "engine2 (pid $pid) did not stop in 30 s"; exit 1; fi
  rm -f "$E2_PID"
}

ensure_engine2() {
  if ! engine2_up; then start_engine2; fi
  engine2_tls_up || { log "engine2 does not answer over TLS at tcp://127.0.0.1:$E2_TCP_PORT"; exit 1; }
  if ! d2 image inspect "$IMAGE" >/dev/null 2>&1; then
    log "loading $IMAGE into engine2 (docker save | docker load, offline)"
    docker save "$IMAGE" | d2 load >/dev/null
  fi
}

# --- sshd ---------------------------------------------------------------------------------
ssh_check() {
  ssh -F none -i "$SSH_DIR/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o UserKnownHostsFile="$SSH_DIR/known_hosts" -o StrictHostKeyChecking=yes \
    -o ConnectTimeout=5 -p "$SSH_PORT" root@127.0.0.1 \
    docker -H "unix://$E2_SOCK" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

write_sshd_config() {
  cat <<EOF
# The test sshd (scripts/ensure-hosts.sh): loopback only, key-only, its own files.
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $SSH_DIR/ssh_host_ed25519_key
PidFile $SSH_DIR/sshd.pid
AuthorizedKeysFile $SSH_DIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The login user is root: it reaches engine2's socket with no group set-up. Keys only.
PermitRootLogin prohibit-password
# The transport forwards engine2's unix socket through the SSH connection (direct-streamlocal).
AllowStreamLocalForwarding yes
# Not "no": OpenSSH gates the local forwarding of unix sockets on AllowTcpForwarding as well
# ("Received request to connect to path ..., but the request was denied" with "no").
AllowTcpForwarding local
X11Forwarding no
# The files live under /var/tmp (world-writable, sticky): StrictModes would refuse them.
StrictModes no
# The docker CLI of the fallback (docker system dial-stdio) talks to engine2, not the main engine.
SetEnv DOCKER_HOST=unix://$E2_SOCK
PrintMotd no
LogLevel VERBOSE
EOF
}

ensure_sshd() {
  if [ ! -x /usr/sbin/sshd ]; then
    log "installing openssh-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
  fi
  mkdir -p "$SSH_DIR"; chmod 700 "$SSH_DIR"
  [ -s "$SSH_DIR/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C openpanel-ws-test-host -f "$SSH_DIR/ssh_host_ed25519_key"
  [ -s "$SSH_DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C openpanel-ws-test-client -f "$SSH_DIR/id_ed25519"
  # A host key nobody trusts, for "unknown host key" tests: a known_hosts naming the right
  # host with another key (mismatch), and an empty one (host not listed).
  [ -s "$SSH_DIR/other_host_key" ] || ssh-keygen -q -t ed25519 -N '' -C openpanel-ws-other -f "$SSH_DIR/other_host_key"
  put "$SSH_DIR/authorized_keys" <"$SSH_DIR/id_ed25519.pub"
  echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$SSH_DIR/ssh_host_ed25519_key.pub")" | put "$SSH_DIR/known_hosts"
  echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$SSH_DIR/other_host_key.pub")" | put "$SSH_DIR/known_hosts_mismatch"
  put "$SSH_DIR/known_hosts_empty" </dev/null
  local before; before=$(cat "$SSH_DIR/sshd_config" 2>/dev/null || true)
  write_sshd_config | put "$SSH_DIR/sshd_config"
  if [ "$before" = "$(cat "$SSH_DIR/sshd_config")" ] && ssh_check; then return 0; fi
  if [ -f "$SSH_DIR/sshd.pid" ] && kill -0 "$(cat "$SSH_DIR/sshd.pid")" 2>/dev/null; then
    kill -TERM "$(cat "$SSH_DIR/sshd.pid")" || true; sleep 0.3
  fi
  mkdir -p /run/sshd  # its privilege separation directory
  /usr/sbin/sshd -t -f "$SSH_DIR/sshd_config"
  log "starting sshd on 127.0.0.1:$SSH_PORT"
  # sshd detaches by itself (setsid too: it must outlive make); -E: its log in our file;
  # 9>&-: not holding this script's lock.
  setsid /usr/sbin/sshd -f "$SSH_DIR/sshd_config" -E "$SSH_DIR/sshd.log" </dev/null 9>&-
  for _ in $(seq 1 40); do ssh_check && break; sleep 0.25; done
  ssh_check || { log "sshd does not let root@127.0.0.1:$SSH_PORT reach engine2; log:"; tail -20 "$SSH_DIR/sshd.log" >&2; exit 1; }
}

# --- descriptor ---------------------------------------------------------------------------
write_descriptor() {
  cat <<EOF
{
  "version": 1,
  "image": "$IMAGE",
  "local": {"engine": "unix:///var/run/docker.sock"},
  "engine2": {
    "unix": "unix://$E2_SOCK",
    "socket": "$E2_SOCK",
    "tcp": "tcp://127.0.0.1:$E2_TCP_PORT",
    "tcp_host": "127.0.0.1",
    "tcp_port": $E2_TCP_PORT,
    "pidfile": "$E2_PID",
    "log": "$E2/dockerd.log",
    "bridge": "$E2_BRIDGE",
    "bridge_cidr": "$E2_BRIDGE_CIDR"
  },
  "tls": {
    "certs": "$CERTS/client",
    "ca": "$CERTS/client/ca.pem",
    "cert": "$CERTS/client/cert.pem",
    "key": "$CERTS/client/key.pem",
    "wrong_ca": "$CERTS/wrong-ca",
    "expired": "$CERTS/expired",
    "server_names": ["127.0.0.1", "localhost"]
  },
  "ssh": {
    "url": "ssh://root@127.0.0.1:$SSH_PORT",
    "user": "root",
    "host": "127.0.0.1",
    "port": $SSH_PORT,
    "identity": "$SSH_DIR/id_ed25519",
    "known_hosts": "$SSH_DIR/known_hosts",
    "known_hosts_mismatch": "$SSH_DIR/known_hosts_mismatch",
    "known_hosts_empty": "$SSH_DIR/known_hosts_empty",
    "remote_socket": "$E2_SOCK",
    "config": "$SSH_DIR/sshd_config",
    "pidfile": "$SSH_DIR/sshd.pid",
    "log": "$SSH_DIR/sshd.log"
  }
}
EOF
}

main() {
  [ "$(id -u)" = 0 ] || { log "the test hosts need root (a dockerd, a bridge, an sshd)"; exit 1; }
  mkdir -p "$ROOT"
  exec 9>"$ROOT/.lock"
  flock 9
  case "${1:-ensure}" in
    stop-engine2) stop_engine2; return ;;
    restart-engine2) stop_engine2 ;;
    ensure) ;;
    *) log "usage: $0 [ensure|restart-engine2|stop-engine2]"; exit 2 ;;
  esac
  ensure_certs
  ensure_engine2
  ensure_sshd
  write_descriptor | put "$DESCRIPTOR"
  log "engine2 $(d2 version --format '{{.Server.Version}}') at unix://$E2_SOCK and tcp://127.0.0.1:$E2_TCP_PORT (TLS); sshd at ssh://root@127.0.0.1:$SSH_PORT; $DESCRIPTOR"
}

main "$@"
