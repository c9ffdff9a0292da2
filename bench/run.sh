#!/usr/bin/env bash
# Weft's loopback benchmark, following ../shared/BENCH.md (results: docs/benchmarks.md).
#
# One run measures, interleaved round by round:
#   direct             client -> nginx
#   haproxy            client -> HAProxy (one hop, plaintext) -> nginx
#   haproxy-mesh       client -> HAProxy out -> mTLS, ALPN h2, one multiplexed conn -> HAProxy in -> nginx
#   haproxy-mesh-plain the same chain with plaintext h2 between the HAProxys (Weft's meshed hop is
#                      plaintext until identity lands: this is the like-for-like peer)
#   weft               client -> weft-proxy outbound (one hop, plaintext) -> nginx
#   weft-mesh          client -> weft-proxy outbound -> h2 (plaintext) -> weft-proxy inbound -> nginx
#   weft-mesh-tls      the same with mTLS between the proxies (identities issued by a local
#                      `weft-controller identity` from a throwaway trust anchor made with `weft identity`)
# over HTTP/1.1 keep-alive (h1) and HTTP/2 with prior knowledge (h2): oha at fixed rates
# (latency), wrk / h2load (max rps); then RSS with N idle client connections.
# TLS handshakes per second per core (mTLS inbound vs HAProxy's): bench/handshakes.sh.
#
# Every process runs pinned: load generators on CPU $CLIENT_CPU, nginx and every proxy on
# $SERVER_CPU; every proxy has one worker thread. Everything listens on 127.0.0.1 only.
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION seconds per run [25]  WARMUP seconds per setup and protocol per round [5]
#   RATES ["1000 2000"]  PROTOS ["h1 h2"]  SETUPS [all of the above]  CONNS [1000]
#   QUICK=1     smoke run: 1 round, 3 s runs, 1 s warm-up, 200 connections
#   WEFT_SRC=head|worktree [head]: build the committed HEAD (git archive into target/bench-src,
#   target dir target/bench) or the work tree as it is (default target dir)
#   SKIP_BUILD=1  use the existing release binary (WEFT_BIN overrides its path)
#   OUT  result directory [bench/results/<UTC time>]
#   MAX_STEAL_LAT [2] / MAX_STEAL_MAX [5]: a run above this steal %, or during which a compiler
#   (rustc, cargo, cc, ld...) ran, is repeated up to RETRIES [2] times (every attempt is kept in
#   runs.jsonl; the last one is used). Before each run, wait up to WAIT_QUIET [600] s for no
#   compiler to have run for 5 s.   KEEP_RAW=1 keep raw tool outputs in OUT/raw
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  ROUNDS=${ROUNDS:-1}; DURATION=${DURATION:-3}; WARMUP=${WARMUP:-1}; CONNS=${CONNS:-200}
else
  ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-25}; WARMUP=${WARMUP:-5}; CONNS=${CONNS:-1000}
fi
RATES=${RATES:-"1000 2000"}
PROTOS=${PROTOS:-"h1 h2"}
SETUPS=${SETUPS:-"direct haproxy haproxy-mesh haproxy-mesh-plain weft weft-mesh weft-mesh-tls"}
MAX_STEAL_LAT=${MAX_STEAL_LAT:-2}
MAX_STEAL_MAX=${MAX_STEAL_MAX:-5}
RETRIES=${RETRIES:-2}
WAIT_QUIET=${WAIT_QUIET:-600}
CLIENT_CPU=${CLIENT_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
KEEP_RAW=${KEEP_RAW:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$HERE/results/$STAMP$([[ $QUICK == 1 ]] && echo -quick || true)}

for tool in nginx haproxy wrk h2load openssl taskset python3 curl "$OHA"; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (see docs/benchmarks.md)" >&2; exit 1; }
done
if [[ $(nproc) -lt 2 ]]; then echo "needs 2 CPUs" >&2; exit 1; fi

# ------------------------------------------------------------------------------------------
# Build: by default the committed HEAD (exported with `git archive`, so edits in progress in the
# work tree do not leak into the numbers), in its own target directory.

WEFT_SRC=${WEFT_SRC:-head}
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
if [[ $WEFT_SRC == head ]]; then
  SRC="$ROOT/target/bench-src/$COMMIT"
  TARGET_DIR=${BENCH_TARGET_DIR:-$ROOT/target/bench}
  if [[ ! -f $SRC/Cargo.toml ]]; then
    mkdir -p "$SRC"
    git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$SRC"
  fi
  DIRTY=no
else
  SRC=$ROOT
  DIRTY=$(git -C "$ROOT" status --short -- crates Cargo.toml Cargo.lock | tr '\n' ';')
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$SRC" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p weft-proxy -p weft-controller -p weft-cli)
fi
WEFT=${WEFT_BIN:-$TARGET_DIR/release/weft-proxy}
WEFT_CTL=$TARGET_DIR/release/weft-controller
WEFT_CLI=$TARGET_DIR/release/weft
for b in "$WEFT" "$WEFT_CTL" "$WEFT_CLI"; do [[ -x $b ]] || { echo "no $b" >&2; exit 1; }; done

# ------------------------------------------------------------------------------------------
# Processes: every one we start is killed on exit.

TMP=$(mktemp -d /tmp/weft-bench.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n "$(ulimit -Hn)"
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $((CONNS * 2 + 200)) ]]; then
  echo "open-file limit $(ulimit -n) is too low for CONNS=$CONNS" >&2; exit 1
fi

mkdir -p "$OUT/raw"
RUNS="$OUT/runs.jsonl"
: >"$RUNS"
: >"$OUT/memory.jsonl"
B="$HERE/bench.py"

read -r NGX1 NGX2 HA1 HA2 HMO1 HMO2 HMI1 HMI2 HPO1 HPO2 HPI1 HPI2 \
  WO WI WA WMO WMCI WMCA WMSO WMSI WMSA IDP IDA WTO WTCI WTCA WTSO WTSI WTSA <<<"$(python3 "$B" ports 29)"

# start NAME CMD... : runs CMD pinned to the server CPU, logs to $TMP/NAME.log, sets PID_NAME.
start() {
  local name=$1; shift
  taskset -c "$SERVER_CPU" "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=("$!")
  printf -v "PID_${name//-/_}" '%s' "$!"
}

wait_port() {
  local port=$1 i
  for i in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $port never opened; logs:" >&2
  tail -n 20 "$TMP"/*.log >&2 || true
  exit 1
}

# nginx: 1 worker, `return 200 "hello world\n"`; HTTP/1.1 on NGX1, h2c (prior knowledge) on NGX2.
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  default_type text/plain;
  client_body_temp_path $TMP/nginx-body;
  proxy_temp_path $TMP/nginx-proxy;
  fastcgi_temp_path $TMP/nginx-fcgi;
  uwsgi_temp_path $TMP/nginx-uwsgi;
  scgi_temp_path $TMP/nginx-scgi;
  server { listen 127.0.0.1:$NGX1; location / { return 200 "hello world\n"; } }
  server { listen 127.0.0.1:$NGX2 http2; location / { return 200 "hello world\n"; } }
}
EOF
start nginx nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log"

# Throwaway CA and certificates for the HAProxy mesh (ECDSA P-256, like a mesh's workload certs).
(
  cd "$TMP"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj /CN=weft-bench-ca 2>/dev/null
  for n in inbound outbound; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$n.key" -out "$n.csr" \
      -subj "/CN=$n.mesh.local" 2>/dev/null
    printf 'subjectAltName=DNS:%s.mesh.local\nextendedKeyUsage=serverAuth,clientAuth\n' "$n" >"$n.ext"
    openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$n.crt" -days 2 \
      -extfile "$n.ext" 2>/dev/null
    cat "$n.crt" "$n.key" >"$n.pem"
  done
)

# Weft identities: trust anchor + issuer (weft identity), workload tokens = hex HMAC-SHA256(key,
# identity), the identity service pinned with the clients (it is idle once the proxies hold their
# 24 h certificates).
ID_CLIENT=client.bench.serviceaccount.identity.weft.cluster.local
ID_SERVER=server.bench.serviceaccount.identity.weft.cluster.local
mkdir -p "$TMP/id"
(
  cd "$TMP/id"
  "$WEFT_CLI" identity create-root ca.crt ca.key --not-after 48h >/dev/null
  "$WEFT_CLI" identity create-issuer issuer.crt issuer.key --ca ca.crt --ca-key ca.key --not-after 47h >/dev/null
  openssl rand -hex 32 >token.key
  for id in $ID_CLIENT $ID_SERVER; do
    python3 -c 'import hmac,hashlib,sys; k=open("token.key").read().strip().encode(); print(hmac.new(k, sys.argv[1].encode(), hashlib.sha256).hexdigest())' \
      "$id" >"${id%%.*}.token"
  done
)
taskset -c "$CLIENT_CPU" "$WEFT_CTL" identity --listen 127.0.0.1:$IDP --admin-listen 127.0.0.1:$IDA \
  --trust-anchors "$TMP/id/ca.crt" --issuer-cert "$TMP/id/issuer.crt" --issuer-key "$TMP/id/issuer.key" \
  --token-key-file "$TMP/id/token.key" >"$TMP/identity.log" 2>&1 &
PIDS+=("$!")
wait_port "$IDP"

HA_GLOBAL="global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  http-reuse always"

cat >"$TMP/haproxy.cfg" <<EOF
$HA_GLOBAL
frontend h1
  bind 127.0.0.1:$HA1
  default_backend ngx1
frontend h2
  bind 127.0.0.1:$HA2 proto h2
  default_backend ngx2
backend ngx1
  server s 127.0.0.1:$NGX1
backend ngx2
  server s 127.0.0.1:$NGX2 proto h2
EOF

TLS_OUT="ssl crt $TMP/outbound.pem ca-file $TMP/ca.pem verify required verifyhost inbound.mesh.local sni str(inbound.mesh.local) alpn h2"
cat >"$TMP/haproxy-mesh-out.cfg" <<EOF
$HA_GLOBAL
frontend h1
  bind 127.0.0.1:$HMO1
  default_backend mesh1
frontend h2
  bind 127.0.0.1:$HMO2 proto h2
  default_backend mesh2
backend mesh1
  server in 127.0.0.1:$HMI1 $TLS_OUT
backend mesh2
  server in 127.0.0.1:$HMI2 $TLS_OUT
EOF
TLS_IN="ssl crt $TMP/inbound.pem ca-file $TMP/ca.pem verify required alpn h2"
cat >"$TMP/haproxy-mesh-in.cfg" <<EOF
$HA_GLOBAL
frontend in1
  bind 127.0.0.1:$HMI1 $TLS_IN
  default_backend ngx1
frontend in2
  bind 127.0.0.1:$HMI2 $TLS_IN
  default_backend ngx2
backend ngx1
  server s 127.0.0.1:$NGX1
backend ngx2
  server s 127.0.0.1:$NGX2 proto h2
EOF
cat >"$TMP/haproxy-plain-out.cfg" <<EOF
$HA_GLOBAL
frontend h1
  bind 127.0.0.1:$HPO1
  default_backend mesh1
frontend h2
  bind 127.0.0.1:$HPO2 proto h2
  default_backend mesh2
backend mesh1
  server in 127.0.0.1:$HPI1 proto h2
backend mesh2
  server in 127.0.0.1:$HPI2 proto h2
EOF
cat >"$TMP/haproxy-plain-in.cfg" <<EOF
$HA_GLOBAL
frontend in1
  bind 127.0.0.1:$HPI1 proto h2
  default_backend ngx1
frontend in2
  bind 127.0.0.1:$HPI2 proto h2
  default_backend ngx2
backend ngx1
  server s 127.0.0.1:$NGX1
backend ngx2
  server s 127.0.0.1:$NGX2 proto h2
EOF
PROXY_PIDS=()
start_proxies() {
  local c n0=${#PIDS[@]} p
  for c in haproxy haproxy-mesh-out haproxy-mesh-in haproxy-plain-out haproxy-plain-in; do
    haproxy -c -q -f "$TMP/$c.cfg"
    start "$c" haproxy -db -f "$TMP/$c.cfg"
  done
  local weft_env=(WEFT_PROXY_IDENTITY_DISABLED=true WEFT_PROXY_WORKER_THREADS=1 WEFT_PROXY_LOG=warn)
  start weft env "${weft_env[@]}" \
    WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:$WO WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:$WI \
    WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$WA "$WEFT"
  start weft-mesh-in env "${weft_env[@]}" \
    WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:$WMSO WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:$WMSI \
    WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$WMSA WEFT_PROXY_INBOUND_APP_ADDR=127.0.0.1:$NGX1 "$WEFT"
  start weft-mesh-out env "${weft_env[@]}" \
    WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:$WMO WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:$WMCI \
    WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$WMCA \
    WEFT_PROXY_MESHED_PEERS=127.0.0.1:$NGX1=127.0.0.1:$WMSI,127.0.0.1:$NGX2=127.0.0.1:$WMSI "$WEFT"
  local id_env=(WEFT_PROXY_WORKER_THREADS=1 WEFT_PROXY_LOG=warn
    WEFT_PROXY_IDENTITY_TRUST_ANCHORS="$TMP/id/ca.crt" WEFT_PROXY_IDENTITY_SVC_ADDR=127.0.0.1:$IDP)
  start weft-tls-in env "${id_env[@]}" \
    WEFT_PROXY_IDENTITY_NAME=$ID_SERVER WEFT_PROXY_IDENTITY_TOKEN_FILE="$TMP/id/server.token" \
    WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:$WTSO WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:$WTSI \
    WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$WTSA WEFT_PROXY_INBOUND_APP_ADDR=127.0.0.1:$NGX1 "$WEFT"
  start weft-tls-out env "${id_env[@]}" \
    WEFT_PROXY_IDENTITY_NAME=$ID_CLIENT WEFT_PROXY_IDENTITY_TOKEN_FILE="$TMP/id/client.token" \
    WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:$WTO WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:$WTCI \
    WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$WTCA \
    WEFT_PROXY_MESHED_PEERS=127.0.0.1:$NGX1=127.0.0.1:$WTSI@$ID_SERVER,127.0.0.1:$NGX2=127.0.0.1:$WTSI@$ID_SERVER "$WEFT"
  PROXY_PIDS=("${PIDS[@]:$n0}")
  for p in $NGX1 $NGX2 $HA1 $HA2 $HMO1 $HMO2 $HMI1 $HMI2 $HPO1 $HPO2 $HPI1 $HPI2 $WO $WMO $WMSI $WTCA $WTSA; do
    wait_port "$p"
  done
  # Identity-enabled proxies are ready once they hold a certificate.
  for p in $WTCA $WTSA; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/ready" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$p/ready" >/dev/null || { echo "proxy with admin $p never ready" >&2; tail -n 20 "$TMP"/*.log >&2; exit 1; }
  done
  sleep 1
}
stop_proxies() {
  local p
  for p in "${PROXY_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PROXY_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  local keep=() q
  for q in "${PIDS[@]}"; do [[ " ${PROXY_PIDS[*]} " == *" $q "* ]] || keep+=("$q"); done
  PIDS=("${keep[@]}")
}
start_proxies

# Per setup: where the client connects (h1, h2) and which processes are the proxies under test.
conn_port() { # setup proto
  local s=$1 p=$2
  case $s in
    direct) [[ $p == h1 ]] && echo "$NGX1" || echo "$NGX2" ;;
    haproxy) [[ $p == h1 ]] && echo "$HA1" || echo "$HA2" ;;
    haproxy-mesh) [[ $p == h1 ]] && echo "$HMO1" || echo "$HMO2" ;;
    haproxy-mesh-plain) [[ $p == h1 ]] && echo "$HPO1" || echo "$HPO2" ;;
    weft) echo "$WO" ;;
    weft-mesh) echo "$WMO" ;;
    weft-mesh-tls) echo "$WTO" ;;
  esac
}
auth_port() { [[ $1 == h1 ]] && echo "$NGX1" || echo "$NGX2"; }
proc_pids() {
  case $1 in
    direct) echo "" ;;
    haproxy) echo "$PID_haproxy" ;;
    haproxy-mesh) echo "$PID_haproxy_mesh_out,$PID_haproxy_mesh_in" ;;
    haproxy-mesh-plain) echo "$PID_haproxy_plain_out,$PID_haproxy_plain_in" ;;
    weft) echo "$PID_weft" ;;
    weft-mesh) echo "$PID_weft_mesh_out,$PID_weft_mesh_in" ;;
    weft-mesh-tls) echo "$PID_weft_tls_out,$PID_weft_tls_in" ;;
  esac
}
proc_names() {
  case $1 in
    direct) echo "" ;;
    haproxy | weft) echo "proxy" ;;
    *) echo "out,in" ;;
  esac
}

# Every request names nginx as its authority (Host / :authority) and only the TCP destination
# differs by setup: HAProxy ignores the authority, Weft routes by it.
oha_cmd() { # setup proto rate seconds -> CMD array
  local s=$1 p=$2 rate=$3 secs=$4 cp ap
  cp=$(conn_port "$s" "$p"); ap=$(auth_port "$p")
  CMD=("$OHA" --no-tui --output-format json -q "$rate" --latency-correction -c 10 -z "${secs}s")
  [[ $p == h2 ]] && CMD+=(--http2)
  [[ $cp != "$ap" ]] && CMD+=(--connect-to "127.0.0.1:$ap:127.0.0.1:$cp")
  CMD+=("http://127.0.0.1:$ap/")
}
max_cmd() { # setup proto seconds -> CMD array
  local s=$1 p=$2 secs=$3 cp ap
  cp=$(conn_port "$s" "$p"); ap=$(auth_port "$p")
  if [[ $p == h1 ]]; then
    CMD=(wrk -t1 -c10 -d"${secs}s" -H "Host: 127.0.0.1:$ap" "http://127.0.0.1:$cp/")
  else
    CMD=(h2load -t1 -c10 -m10 -D "$secs" "--connect-to=127.0.0.1:$cp" "http://127.0.0.1:$ap/")
  fi
}

# Smoke check: every setup answers 200 in both protocols.
smoke() {
  local s p cp ap body flag
  for s in $SETUPS; do
    for p in $PROTOS; do
      cp=$(conn_port "$s" "$p"); ap=$(auth_port "$p")
      flag=(); [[ $p == h2 ]] && flag=(--http2-prior-knowledge)
      body=$(curl -sS --max-time 5 "${flag[@]}" --connect-to "127.0.0.1:$ap:127.0.0.1:$cp" "http://127.0.0.1:$ap/") || {
        echo "setup $s $p does not answer" >&2; tail -n 20 "$TMP"/*.log >&2; exit 1; }
      [[ $body == "hello world" ]] || { echo "setup $s $p answered: $body" >&2; exit 1; }
    done
  done
}
# RSS of every proxy process: "setup name KiB" lines.
rss_all() {
  local s pids
  for s in $SETUPS; do
    pids=$(proc_pids "$s"); [[ -z $pids ]] && continue
    echo "$s $(python3 "$B" rss ${pids//,/ } | tr ' ' ',')"
  done
}
rss_all >"$OUT/rss-fresh.txt"
smoke
echo "all setups answer; results in $OUT"

rss_all >"$OUT/rss-after-smoke.txt"

# Metadata.
export B_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) B_COMMIT=$COMMIT B_DIRTY=$DIRTY B_SRC=$WEFT_SRC
export B_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
export B_KERNEL=$(uname -r) B_NPROC=$(nproc) B_ROUNDS=$ROUNDS B_DURATION=$DURATION B_WARMUP=$WARMUP
export B_QUICK=$QUICK B_SETUPS=$SETUPS B_RATES=$RATES B_PROTOS=$PROTOS B_CONNS=$CONNS
export B_WEFT_SHA=$(sha256sum "$WEFT" | cut -c1-16)
export B_VERSIONS="nginx $(nginx -v 2>&1 | cut -d/ -f2); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); h2load $(h2load --version | head -1 | awk '{print $NF}'); $("$OHA" --version)"
export B_UPTIME=$(uptime)
python3 - "$OUT/meta.json" <<'EOF'
import json, os, sys
e = os.environ
json.dump({
    "date": e["B_DATE"], "commit": e["B_COMMIT"], "source": e["B_SRC"], "dirty": e["B_DIRTY"] or "no",
    "machine": f'{e["B_NPROC"]} x {e["B_MODEL"]}', "kernel": e["B_KERNEL"], "nproc": int(e["B_NPROC"]),
    "rounds": int(e["B_ROUNDS"]), "duration_s": int(e["B_DURATION"]), "warmup_s": int(e["B_WARMUP"]),
    "quick": e["B_QUICK"] == "1", "setups": e["B_SETUPS"].split(), "rates": e["B_RATES"].split(),
    "protos": e["B_PROTOS"].split(), "conns": int(e["B_CONNS"]), "weft_proxy_sha256_16": e["B_WEFT_SHA"],
    "versions": e["B_VERSIONS"], "uptime_at_start": e["B_UPTIME"],
}, open(sys.argv[1], "w"), indent=1)
EOF

# ------------------------------------------------------------------------------------------
# Rounds: warm every setup up, then each test runs across all setups back to back (the order
# of setups rotates by round).

read -ra SETUP_LIST <<<"$SETUPS"
measure() { # round setup proto kind tool max_steal -- cmd...
  local r=$1 s=$2 p=$3 k=$4 tool=$5 steal=$6; shift 7
  taskset -c "$CLIENT_CPU" python3 "$B" run --runs "$RUNS" --raw "$OUT/raw/r$r-$s-$p-$k.txt" \
    --round "$r" --setup "$s" --proto "$p" --kind "$k" --tool "$tool" --max-steal "$steal" \
    --retries "$RETRIES" --wait-quiet "$WAIT_QUIET" --pids "$(proc_pids "$s")" --names "$(proc_names "$s")" -- "$@"
}

for r in $(seq 1 "$ROUNDS"); do
  n=${#SETUP_LIST[@]}
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${SETUP_LIST[$(((i + r - 1) % n))]}"); done
  echo "== round $r: ${order[*]} ($(cut -d' ' -f1-3 /proc/loadavg))"
  for s in "${order[@]}"; do
    for p in $PROTOS; do
      oha_cmd "$s" "$p" 1000 "$WARMUP"
      taskset -c "$CLIENT_CPU" "${CMD[@]}" >/dev/null 2>&1 || true
    done
  done
  for p in $PROTOS; do
    for rate in $RATES; do
      for s in "${order[@]}"; do
        oha_cmd "$s" "$p" "$rate" "$DURATION"
        measure "$r" "$s" "$p" "lat$rate" oha "$MAX_STEAL_LAT" -- "${CMD[@]}"
      done
    done
    for s in "${order[@]}"; do
      tool=wrk; [[ $p == h2 ]] && tool=h2load
      max_cmd "$s" "$p" "$DURATION"
      measure "$r" "$s" "$p" max "$tool" "$MAX_STEAL_MAX" -- "${CMD[@]}"
    done
  done
done

# ------------------------------------------------------------------------------------------
# Memory, on freshly started proxies (so heap left over from the load runs does not hide the
# growth; restarted again between the two modes): RSS idle, then with $CONNS client connections
# open (bare TCP that sent nothing; or keep-alive after one request each), and after they close.

rss_all >"$OUT/rss-after-load.txt"
for mode in bare keepalive; do
  stop_proxies
  start_proxies
  declare -A IDLE=()
  while read -r s v; do IDLE[$s]=$v; done < <(rss_all)
  smoke
  for s in "${SETUP_LIST[@]}"; do
    pids=$(proc_pids "$s"); [[ -z $pids ]] && continue
    python3 "$B" mem --out "$OUT/memory.jsonl" --setup "$s" --mode "$mode" --n "$CONNS" \
      --port "$(conn_port "$s" h1)" --host "127.0.0.1:$NGX1" --pids "$pids" --names "$(proc_names "$s")" \
      --idle "${IDLE[$s]}" --taskset "$CLIENT_CPU" >/dev/null
  done
done

python3 "$B" summarize "$OUT"
if [[ $KEEP_RAW != 1 ]]; then
  tar -C "$OUT" -czf "$OUT/raw.tar.gz" raw && rm -rf "$OUT/raw"
fi
echo "done: $OUT"
