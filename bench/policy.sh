#!/usr/bin/env bash
# What traffic policy costs the outbound proxy (issue 4's benchmark), following ../shared/BENCH.md:
# one run, setups interleaved round by round, on loopback, at a constant rate.
#
#   direct   client -> nginx
#   static   client -> weft-proxy outbound (peer from WEFT_PROXY_MESHED_PEERS, no policy)
#            -> h2 -> weft-proxy inbound -> nginx
#   policy   the same chain, but the outbound proxy learns the endpoint and the policy from a
#            running `weft-controller destination`: a ServiceProfile with four routes (path regex
#            conditions; the matched route is retryable with a timeout) and a retry budget.
#            Nothing fails, so this is the price of discovery, route matching, the budget
#            bookkeeping and the replay buffer on every request.
# Identity is disabled on all proxies so the comparison isolates policy (mTLS costs are in
# bench/run.sh). Every request names the Service's authority; only the TCP destination differs.
#
# Environment: ROUNDS [3]  DURATION seconds [10]  WARMUP [2]  RATE [5000]  PROTOS ["h1 h2"]
#   OUT [bench/results/<UTC>-policy]   SKIP_BUILD=1 (use target/bench/release as bench/run.sh built it)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RATE=${RATE:-5000}
PROTOS=${PROTOS:-"h1 h2"}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
OUT=${OUT:-$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)-policy}
B="$HERE/bench.py"
for tool in nginx taskset python3 curl "$OHA"; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (see docs/benchmarks.md)" >&2; exit 1; }
done

TARGET_DIR=${BENCH_TARGET_DIR:-$ROOT/target/bench}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
  SRC="$ROOT/target/bench-src/$COMMIT"
  if [[ ! -f $SRC/Cargo.toml ]]; then
    mkdir -p "$SRC"
    git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$SRC"
  fi
  (cd "$SRC" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p weft-proxy -p weft-controller)
fi
WEFT=$TARGET_DIR/release/weft-proxy
WEFT_CTL=$TARGET_DIR/release/weft-controller
for b in "$WEFT" "$WEFT_CTL"; do [[ -x $b ]] || { echo "no $b" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/weft-bench-policy.XXXXXX)
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
mkdir -p "$OUT/raw"
RUNS="$OUT/runs.jsonl"
: >"$RUNS"

read -r NGX1 NGX2 SO SI SA SOA PO PI PA POA DP DA <<<"$(python3 "$B" ports 12)"
start() { # NAME CMD...: pinned to CPU 1, logs to $TMP/NAME.log, PID in PID_NAME
  local name=$1; shift
  taskset -c 1 "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=("$!")
  printf -v "PID_$name" '%s' "$!"
}
wait_url() {
  local url=$1 i
  for i in $(seq 100); do curl -sf "$url" >/dev/null && return 0; sleep 0.1; done
  echo "$url never answered; logs:" >&2; tail -n 20 "$TMP"/*.log >&2; exit 1
}

cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  default_type text/plain;
  client_body_temp_path $TMP/b; proxy_temp_path $TMP/p; fastcgi_temp_path $TMP/f;
  uwsgi_temp_path $TMP/u; scgi_temp_path $TMP/s;
  server { listen 127.0.0.1:$NGX1; location / { return 200 "hello world\n"; } }
  server { listen 127.0.0.1:$NGX2 http2; location / { return 200 "hello world\n"; } }
}
EOF
start nginx nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log"

# The Service, its one workload (nginx, "meshed": its inbound proxy is on port $PI), and a
# ServiceProfile shaped like the spec's.
AUTH=web-svc.bench.svc.cluster.local
mkdir -p "$TMP/manifests"
cat >"$TMP/manifests/web.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: web-svc, namespace: bench}
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: $NGX1}
    - {name: h2, port: 81, targetPort: $NGX2}
---
apiVersion: workload.linkerd.io/v1beta1
kind: ExternalWorkload
metadata:
  name: web-1
  namespace: bench
  labels: {app: web}
  annotations: {config.linkerd.io/proxy-inbound-port: "$PI"}
spec:
  meshTLS: {identity: web.bench.serviceaccount.identity.weft.cluster.local, serverName: web-1.bench}
  ports: [{port: $NGX1}, {port: $NGX2}]
  workloadIPs: [{ip: 127.0.0.1}]
---
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: $AUTH, namespace: bench}
spec:
  routes:
    - {name: "POST /api/vote", condition: {method: POST, pathRegex: /api/vote}, isRetryable: false}
    - {name: "GET /api/list", condition: {method: GET, pathRegex: /api/list}, isRetryable: true, timeout: 600ms}
    - {name: "GET /api/emoji/{id}", condition: {method: GET, pathRegex: "/api/emoji/[^/]*"}, isRetryable: true, timeout: 1s}
    - {name: "GET /", condition: {all: [{method: GET}, {pathRegex: "/"}]}, isRetryable: true, timeout: 2s}
  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}
EOF
taskset -c 0 "$WEFT_CTL" destination --listen 127.0.0.1:$DP --admin-listen 127.0.0.1:$DA \
  --manifests "$TMP/manifests" >"$TMP/destination.log" 2>&1 &
PIDS+=("$!")
wait_url "http://127.0.0.1:$DA/ready"

env_common=(WEFT_PROXY_IDENTITY_DISABLED=true WEFT_PROXY_WORKER_THREADS=1 WEFT_PROXY_LOG=warn)
# One inbound proxy per chain, so each setup's pair is measured alone.
start static_in env "${env_common[@]}" WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:0 \
  WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:$SI WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$SA \
  WEFT_PROXY_INBOUND_APP_ADDR=127.0.0.1:$NGX1 "$WEFT"
start static_out env "${env_common[@]}" WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:$SO \
  WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:0 WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$SOA \
  WEFT_PROXY_MESHED_PEERS="$AUTH:80=127.0.0.1:$SI/$NGX1,$AUTH:81=127.0.0.1:$SI/$NGX2" "$WEFT"
start policy_in env "${env_common[@]}" WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:0 \
  WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:$PI WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$PA \
  WEFT_PROXY_INBOUND_APP_ADDR=127.0.0.1:$NGX1 "$WEFT"
start policy_out env "${env_common[@]}" WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:$PO \
  WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:0 WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$POA \
  WEFT_PROXY_DESTINATION_SVC_ADDR=127.0.0.1:$DP "$WEFT"
for a in $SA $SOA $PA $POA; do wait_url "http://127.0.0.1:$a/ready"; done

port_of() { # setup proto -> the port the client connects to
  case $1 in
    direct) [[ $2 == h1 ]] && echo "$NGX1" || echo "$NGX2" ;;
    static) echo "$SO" ;;
    policy) echo "$PO" ;;
  esac
}
svc_port() { [[ $1 == h1 ]] && echo 80 || echo 81; }
pids_of() {
  case $1 in
    direct) echo "" ;;
    static) echo "$PID_static_out,$PID_static_in" ;;
    policy) echo "$PID_policy_out,$PID_policy_in" ;;
  esac
}
oha_cmd() { # setup proto rate seconds
  local sp; sp=$(svc_port "$2")
  CMD=("$OHA" --no-tui --output-format json -q "$3" --latency-correction -c 10 -z "${4}s"
    --connect-to "$AUTH:$sp:127.0.0.1:$(port_of "$1" "$2")")
  [[ $2 == h2 ]] && CMD+=(--http2)
  CMD+=("http://$AUTH:$sp/api/emoji/1f600")
}

# Smoke: every setup answers, and the policy setup really uses the profile's route.
for s in direct static policy; do
  for p in $PROTOS; do
    flag=(); [[ $p == h2 ]] && flag=(--http2-prior-knowledge)
    sp=$(svc_port "$p")
    body=$(curl -sS --max-time 5 "${flag[@]}" --connect-to "$AUTH:$sp:127.0.0.1:$(port_of "$s" "$p")" \
      "http://$AUTH:$sp/api/emoji/1f600") || { echo "$s $p does not answer" >&2; tail -n 20 "$TMP"/*.log >&2; exit 1; }
    [[ $body == "hello world" ]] || { echo "$s $p answered: $body" >&2; exit 1; }
  done
done
# A manifest the controller could not read would silently measure the default route instead.
if grep -qE 'problems=[1-9]|policy_errors=[1-9]| ERROR | WARN ' "$TMP/destination.log"; then
  echo "the destination service reported problems with the manifests:" >&2; cat "$TMP/destination.log" >&2; exit 1
fi
if ! curl -sf "http://127.0.0.1:$POA/metrics" | grep -q 'route="GET /api/emoji/{id}"'; then
  echo "the policy proxy did not use the profile's route:" >&2
  curl -sf "http://127.0.0.1:$POA/metrics" | grep '^route_request_total' >&2; exit 1
fi
echo "all setups answer; results in $OUT"

SETUPS=(direct static policy)
for r in $(seq 1 "$ROUNDS"); do
  order=()
  for i in 0 1 2; do order+=("${SETUPS[$(((i + r - 1) % 3))]}"); done
  echo "== round $r: ${order[*]} ($(cut -d' ' -f1-3 /proc/loadavg))"
  for p in $PROTOS; do
    for s in "${order[@]}"; do
      oha_cmd "$s" "$p" 1000 "$WARMUP"
      taskset -c 0 "${CMD[@]}" >/dev/null 2>&1 || true
      oha_cmd "$s" "$p" "$RATE" "$DURATION"
      taskset -c 0 python3 "$B" run --runs "$RUNS" --raw "$OUT/raw/r$r-$s-$p.txt" --round "$r" \
        --setup "$s" --proto "$p" --kind "lat$RATE" --tool oha --max-steal 2 --retries 2 \
        --wait-quiet 0 --pids "$(pids_of "$s")" --names out,in -- "${CMD[@]}"
    done
  done
done

# Which route the policy proxy used (proof that the policy applied), from its metrics.
curl -sf "http://127.0.0.1:$POA/metrics" | grep -E '^(route_request_total|route_retry)' >"$OUT/policy-route-metrics.txt" || true

python3 - "$RUNS" "$OUT/summary.md" "$RATE" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = [r for r in runs if not r.get("discarded")]
rate = sys.argv[3]
def med(xs):
    xs = [x for x in xs if x is not None]
    return (statistics.median(xs), min(xs), max(xs)) if xs else None
def f(m, d=3):
    return "–" if m is None else f"{m[0]:.{d}f} ({m[1]:.{d}f}–{m[2]:.{d}f})"
out = [f"# Policy overhead at {rate} rps (oha, latency-corrected, -c 10)", "",
       "Median over rounds (min–max). Added = setup minus direct of the same round.", ""]
for proto in sorted({r["proto"] for r in runs}):
    out += [f"## {proto}", "", "| setup | rps | p50 ms | p99 ms | added p50 ms | added p99 ms | outbound CPU µs/req | inbound CPU µs/req | outbound RSS KiB |", "|---|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in runs:
        if r["proto"] == proto:
            by.setdefault(r["setup"], {})[r["round"]] = r
    direct = by.get("direct", {})
    for s in ("direct", "static", "policy"):
        rs = by.get(s, {})
        rows = list(rs.values())
        add50 = [rs[k]["p50_ms"] - direct[k]["p50_ms"] for k in rs if k in direct]
        add99 = [rs[k]["p99_ms"] - direct[k]["p99_ms"] for k in rs if k in direct]
        cpu_o = [r["procs"].get("out", {}).get("cpu_us_per_req") for r in rows]
        cpu_i = [r["procs"].get("in", {}).get("cpu_us_per_req") for r in rows]
        rss_o = [r["procs"].get("out", {}).get("rss_kib_max") for r in rows]
        out.append(f"| {s} | {f(med([r.get('rps') for r in rows]), 0)} | {f(med([r.get('p50_ms') for r in rows]))} | {f(med([r.get('p99_ms') for r in rows]))} | {f(med(add50))} | {f(med(add99))} | {f(med(cpu_o), 1)} | {f(med(cpu_i), 1)} | {f(med(rss_o), 0)} |")
    bad = sum((r.get("non2xx") or 0) + (r.get("errors") or 0) for r in runs if r["proto"] == proto)
    out += ["", f"Failed requests over all kept runs: {bad}.", ""]
kept = [r for r in runs if r.get("kept_despite")]
if kept:
    out += ["Runs kept although disturbed:"] + [f"- round {r['round']} {r['setup']} {r['proto']}: {r['kept_despite']}" for r in kept]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
tar -C "$OUT" -czf "$OUT/raw.tar.gz" raw && rm -rf "$OUT/raw"
echo "done: $OUT"
