#!/usr/bin/env bash
# TLS handshakes per second per core of the mTLS meshed hop's inbound side, beside the HAProxy
# mesh inbound (../shared/BENCH.md; results: docs/benchmarks.md, "TLS handshakes").
#
# Between meshed proxies connections are pooled, so turning client keep-alive off (`oha
# --disable-keepalive` through the outbound) creates no proxy-to-proxy handshakes. This script
# measures the inbound side's handshake cost directly: a Python client (bench.py hs, several
# processes, pinned to $CLIENT_CPU) opens a new TCP connection, does a full TLS 1.3 handshake with
# a client certificate, SNI = the server's identity (the Weft inbound only terminates TLS for its
# own identity) and ALPN h2, sends the HTTP/2 preface and one GET (carried like the Weft outbound
# sends HTTP/1.1: l5d-orig-proto + weft-dst-port; HAProxy ignores both), reads the response
# (proving the server finished the handshake, client-certificate check included), and closes.
# The number that matters does not depend on the client's speed: the server process's CPU time
# (utime+stime, /proc/PID/stat) over the run divided by the handshakes completed =
# **server CPU µs per handshake**; 1e6 / that = **handshakes per second per core**.
#
# Servers, pinned to $SERVER_CPU, one thread each, both forwarding to the same nginx:
#   weft     weft-proxy inbound with identity (leaf ECDSA P-256 from a local `weft-controller
#            identity`, trust anchor + issuer made with `weft identity`), TLS 1.3 (rustls/aws-lc-rs)
#   haproxy  HAProxy configured like bench/run.sh's haproxy-mesh inbound (`ssl crt … ca-file …
#            verify required alpn h2`, nbthread 1), its leaf (ECDSA P-256, same SANs shape) made
#            with openssl and signed by the same Weft issuer, served with the same 2-cert chain
# The client's leaf (ECDSA P-256, DNS SAN = a workload identity, clientAuth+serverAuth) is made
# with openssl and signed by the same issuer; chain = leaf + issuer. Everything on 127.0.0.1.
#
# Rounds are interleaved (weft, haproxy, then haproxy, weft, …); median and min–max are reported.
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION seconds per run [10]  WARMUP seconds per setup and round [2]
#   PROCS client processes [4]  SETUPS ["weft haproxy"]  CLIENT_CPU [0]  SERVER_CPU [1]
#   MAX_STEAL [5] a run above this steal % is repeated up to RETRIES [2] times (all kept in runs.jsonl)
#   WAIT_QUIET [0] before each run wait up to this many s for no compiler to have run for 5 s (CPU
#   time per handshake is little affected by other load, so by default runs go ahead and only
#   record which compilers ran; the achieved handshakes/s does drop when CPU 0 is shared)
#   BIN_DIR [target/bench/release: the committed HEAD as bench/run.sh builds it; built like run.sh
#   does if a binary is missing]   OUT [bench/results/<UTC time>-handshakes]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PROCS=${PROCS:-4}
SETUPS=${SETUPS:-"weft haproxy"}
CLIENT_CPU=${CLIENT_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
MAX_STEAL=${MAX_STEAL:-5}
RETRIES=${RETRIES:-2}
WAIT_QUIET=${WAIT_QUIET:-0}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$HERE/results/$STAMP-handshakes}
B="$HERE/bench.py"

for tool in nginx haproxy openssl taskset python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (see docs/benchmarks.md)" >&2; exit 1; }
done
if [[ $(nproc) -lt 2 ]]; then echo "needs 2 CPUs" >&2; exit 1; fi

# ------------------------------------------------------------------------------------------
# Binaries: by default those bench/run.sh builds from the committed HEAD; built the same way
# (git archive of HEAD, target/bench) only if one is missing.

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
BIN_DIR=${BIN_DIR:-$ROOT/target/bench/release}
WEFT=$BIN_DIR/weft-proxy
WEFT_CTL=$BIN_DIR/weft-controller
WEFT_CLI=$BIN_DIR/weft
if [[ ! -x $WEFT || ! -x $WEFT_CTL || ! -x $WEFT_CLI ]]; then
  SRC="$ROOT/target/bench-src/$COMMIT"
  if [[ ! -f $SRC/Cargo.toml ]]; then
    mkdir -p "$SRC"
    git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$SRC"
  fi
  (cd "$SRC" && CARGO_TARGET_DIR=${BENCH_TARGET_DIR:-$ROOT/target/bench} \
    cargo build --release -p weft-proxy -p weft-controller -p weft-cli)
fi
for b in "$WEFT" "$WEFT_CTL" "$WEFT_CLI"; do [[ -x $b ]] || { echo "no $b" >&2; exit 1; }; done
# The commit the proxy binary was built from (run.sh builds from target/bench-src/<commit>).
BUILT_FROM=$(grep -o 'bench-src/[0-9a-f]*' "$WEFT.d" 2>/dev/null | head -1 | cut -d/ -f2 || true)

# ------------------------------------------------------------------------------------------
# Processes: every one we start is killed on exit.

TMP=$(mktemp -d /tmp/weft-handshakes.XXXXXX)
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
mkdir -p "$OUT"
RUNS="$OUT/runs.jsonl"
: >"$RUNS"

read -r NGX1 WI WO WA HI IDP IDA <<<"$(python3 "$B" ports 7)"

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

# nginx as in bench/run.sh (HTTP/1.1 server only).
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
}
EOF
start nginx nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log"

# ------------------------------------------------------------------------------------------
# PKI: trust anchor + issuer (weft identity), tokens = hex HMAC-SHA256(key, identity) as in
# bench/run.sh; openssl leaves for the client and for HAProxy, signed by the same issuer.

ID_CLIENT=client.bench.serviceaccount.identity.weft.cluster.local
ID_SERVER=server.bench.serviceaccount.identity.weft.cluster.local
mkdir -p "$TMP/id"
(
  cd "$TMP/id"
  "$WEFT_CLI" identity create-root ca.crt ca.key --not-after 48h >/dev/null
  "$WEFT_CLI" identity create-issuer issuer.crt issuer.key --ca ca.crt --ca-key ca.key --not-after 47h >/dev/null
  openssl rand -hex 32 >token.key
  python3 -c 'import hmac,hashlib,sys; k=open("token.key").read().strip().encode(); print(hmac.new(k, sys.argv[1].encode(), hashlib.sha256).hexdigest())' \
    "$ID_SERVER" >server.token
  # leaf NAME IDENTITY SPIFFE-ID: ECDSA P-256, DNS SAN = identity (+ the SPIFFE URI SAN Weft's
  # leaves carry), clientAuth+serverAuth; NAME-chain.pem = leaf + issuer.
  leaf() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.csr" \
      -subj "/CN=$2" 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:$2,URI:$3" "extendedKeyUsage=serverAuth,clientAuth" \
      "keyUsage=critical,digitalSignature" "basicConstraints=critical,CA:FALSE" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA issuer.crt -CAkey issuer.key -CAcreateserial -out "$1.crt" -days 1 \
      -extfile "$1.ext" 2>/dev/null
    cat "$1.crt" issuer.crt >"$1-chain.pem"
    openssl verify -CAfile ca.crt -untrusted issuer.crt "$1.crt" >/dev/null
  }
  leaf client "$ID_CLIENT" spiffe://cluster.local/ns/bench/sa/client
  leaf haproxy "$ID_SERVER" spiffe://cluster.local/ns/bench/sa/server
  cat haproxy-chain.pem haproxy.key >haproxy.pem
)
taskset -c "$CLIENT_CPU" "$WEFT_CTL" identity --listen 127.0.0.1:$IDP --admin-listen 127.0.0.1:$IDA \
  --trust-anchors "$TMP/id/ca.crt" --issuer-cert "$TMP/id/issuer.crt" --issuer-key "$TMP/id/issuer.key" \
  --token-key-file "$TMP/id/token.key" >"$TMP/identity.log" 2>&1 &
PIDS+=("$!")
wait_port "$IDP"

# ------------------------------------------------------------------------------------------
# Servers under test.

start weft env WEFT_PROXY_WORKER_THREADS=1 WEFT_PROXY_LOG=warn \
  WEFT_PROXY_IDENTITY_TRUST_ANCHORS="$TMP/id/ca.crt" WEFT_PROXY_IDENTITY_SVC_ADDR=127.0.0.1:$IDP \
  WEFT_PROXY_IDENTITY_NAME=$ID_SERVER WEFT_PROXY_IDENTITY_TOKEN_FILE="$TMP/id/server.token" \
  WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:$WO WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:$WI \
  WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$WA WEFT_PROXY_INBOUND_APP_ADDR=127.0.0.1:$NGX1 "$WEFT"

# As bench/run.sh's haproxy-mesh inbound (HA_GLOBAL + TLS_IN + backend ngx1).
cat >"$TMP/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  http-reuse always
frontend in1
  bind 127.0.0.1:$HI ssl crt $TMP/id/haproxy.pem ca-file $TMP/id/ca.crt verify required alpn h2
  default_backend ngx1
backend ngx1
  server s 127.0.0.1:$NGX1
EOF
haproxy -c -q -f "$TMP/haproxy.cfg"
start haproxy haproxy -db -f "$TMP/haproxy.cfg"

for p in $NGX1 $WI $WA $HI; do wait_port "$p"; done
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$WA/ready" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$WA/ready" >/dev/null || { echo "weft-proxy never ready" >&2; tail -n 20 "$TMP"/*.log >&2; exit 1; }

server_port() { case $1 in weft) echo "$WI" ;; haproxy) echo "$HI" ;; esac; }
server_pid() { case $1 in weft) echo "$PID_weft" ;; haproxy) echo "$PID_haproxy" ;; esac; }

# What each server negotiates with an OpenSSL 3 client (the same library as the Python client),
# and how many TLS 1.3 session tickets it sends after the handshake (each costs server CPU).
for s in $SETUPS; do
  { sleep 1; } | timeout 5 openssl s_client -connect "127.0.0.1:$(server_port "$s")" -servername "$ID_SERVER" \
    -alpn h2 -cert "$TMP/id/client.crt" -cert_chain "$TMP/id/issuer.crt" -key "$TMP/id/client.key" \
    -CAfile "$TMP/id/ca.crt" -verify_return_error >"$TMP/probe-$s.txt" 2>&1 || true
  {
    grep -a -E '^(New, |Server Temp Key|Peer signature type|ALPN protocol|Verify return code)' "$TMP/probe-$s.txt" | sort -u
    echo "session tickets received: $(grep -a -c 'Post-Handshake New Session Ticket' "$TMP/probe-$s.txt" || true)"
  } | sed "s/^/[$s] /" >"$OUT/negotiated-$s.txt"
done

# Metadata.
export B_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) B_COMMIT=$COMMIT B_BUILT_FROM=$BUILT_FROM
export B_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
export B_KERNEL=$(uname -r) B_NPROC=$(nproc) B_ROUNDS=$ROUNDS B_DURATION=$DURATION B_WARMUP=$WARMUP
export B_PROCS=$PROCS B_SETUPS=$SETUPS B_WEFT_SHA=$(sha256sum "$WEFT" | cut -c1-16)
export B_VERSIONS="nginx $(nginx -v 2>&1 | cut -d/ -f2); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(openssl version | cut -d' ' -f1-2); Python $(python3 -c 'import platform; print(platform.python_version())')"
export B_UPTIME=$(uptime)
python3 - "$OUT/meta.json" <<'EOF'
import json, os, sys
e = os.environ
json.dump({
    "date": e["B_DATE"], "commit": e["B_COMMIT"], "proxy_built_from": e["B_BUILT_FROM"] or "unknown",
    "machine": f'{e["B_NPROC"]} x {e["B_MODEL"]}', "kernel": e["B_KERNEL"], "rounds": int(e["B_ROUNDS"]),
    "duration_s": float(e["B_DURATION"]), "warmup_s": float(e["B_WARMUP"]), "client_procs": int(e["B_PROCS"]),
    "setups": e["B_SETUPS"].split(), "weft_proxy_sha256_16": e["B_WEFT_SHA"], "versions": e["B_VERSIONS"],
    "uptime_at_start": e["B_UPTIME"],
}, open(sys.argv[1], "w"), indent=1)
EOF
echo "servers ready (weft pid $PID_weft, haproxy pid $PID_haproxy); results in $OUT"

# ------------------------------------------------------------------------------------------
# Rounds, interleaved; the order of setups rotates by round.

read -ra SETUP_LIST <<<"$SETUPS"
for r in $(seq 1 "$ROUNDS"); do
  n=${#SETUP_LIST[@]}
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${SETUP_LIST[$(((i + r - 1) % n))]}"); done
  echo "== round $r: ${order[*]} ($(cut -d' ' -f1-3 /proc/loadavg))"
  for s in "${order[@]}"; do
    taskset -c "$CLIENT_CPU" python3 "$B" hs --runs "$RUNS" --round "$r" --setup "$s" \
      --pid "$(server_pid "$s")" --port "$(server_port "$s")" --sni "$ID_SERVER" \
      --authority "127.0.0.1:$NGX1" --dst-port "$NGX1" \
      --ca "$TMP/id/ca.crt" --cert "$TMP/id/client-chain.pem" --key "$TMP/id/client.key" \
      --duration "$DURATION" --warmup "$WARMUP" --procs "$PROCS" --max-steal "$MAX_STEAL" --retries "$RETRIES" \
      --wait-quiet "$WAIT_QUIET"
  done
done

# Both servers must still be alive (a crash would otherwise show as failures only).
for s in $SETUPS; do kill -0 "$(server_pid "$s")" || { echo "$s died; log:" >&2; tail -n 20 "$TMP/$s.log" >&2; exit 1; }; done
# Evidence that the Weft inbound terminated mTLS and saw the client's identity.
curl -sf "http://127.0.0.1:$WA/metrics" | grep -E '^[a-z_]*(request|tls|connection)[a-z_]*_total\{.*direction="inbound"' \
  >"$OUT/weft-inbound-metrics.txt" || true
[[ -s $TMP/weft.log ]] && cp "$TMP/weft.log" "$OUT/weft-proxy.log"
python3 "$B" hs-summarize "$OUT"
echo "done: $OUT"
