#!/usr/bin/env bash
# Where weft-proxy's CPU goes at saturation: runs nginx and weft-proxy (one hop, or the meshed
# pair) pinned like bench/run.sh, drives HTTP/1.1 keep-alive load with wrk, and samples the
# proxy with `perf record -e cpu-clock` (this VM has no hardware counters), DWARF call graphs.
# Writes flat and inclusive symbol summaries to OUT (default bench/results/profile-<UTC time>).
#
# Environment: SETUP=weft|weft-mesh [weft]  DURATION seconds of recording [15]  FREQ [2999]
#   PROTO=h1|h2 [h1]   KEEP_DATA=1 keeps perf.data (large) in OUT
#   WEFT_BIN [target/bench/release/weft-proxy, the committed HEAD as bench/run.sh builds it]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SETUP=${SETUP:-weft}
PROTO=${PROTO:-h1}
DURATION=${DURATION:-15}
FREQ=${FREQ:-2999}
OUT=${OUT:-$HERE/results/profile-$(date -u +%Y%m%dT%H%M%SZ)-$SETUP-$PROTO}
for tool in perf nginx wrk h2load taskset python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
WEFT=${WEFT_BIN:-$ROOT/target/bench/release/weft-proxy}
[[ -x $WEFT ]] || { echo "no $WEFT: run bench/run.sh first (it builds HEAD)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/weft-profile.XXXXXX)
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

read -r NGX1 NGX2 WO WI WA WSO WSI WSA <<<"$(python3 "$HERE/bench.py" ports 8)"
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
taskset -c 1 nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" >"$TMP/nginx.log" 2>&1 &
PIDS+=("$!")

common=(WEFT_PROXY_IDENTITY_DISABLED=true WEFT_PROXY_WORKER_THREADS=1 WEFT_PROXY_LOG=warn)
if [[ $SETUP == weft-mesh ]]; then
  env "${common[@]}" WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:$WSO WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:$WSI \
    WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$WSA WEFT_PROXY_INBOUND_APP_ADDR=127.0.0.1:$NGX1 \
    taskset -c 1 "$WEFT" >"$TMP/in.log" 2>&1 &
  PIDS+=("$!"); PID_IN=$!
  peers="127.0.0.1:$NGX1=127.0.0.1:$WSI,127.0.0.1:$NGX2=127.0.0.1:$WSI"
else
  peers=""
fi
env "${common[@]}" WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:$WO WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:$WI \
  WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:$WA WEFT_PROXY_MESHED_PEERS="$peers" \
  taskset -c 1 "$WEFT" >"$TMP/out.log" 2>&1 &
PIDS+=("$!"); PID_OUT=$!
sleep 1
if [[ $PROTO == h1 ]]; then
  load=(wrk -t1 -c10 -d"$((DURATION + 4))s" -H "Host: 127.0.0.1:$NGX1" "http://127.0.0.1:$WO/")
else
  load=(h2load -t1 -c10 -m10 -D "$((DURATION + 4))" "--connect-to=127.0.0.1:$WO" "http://127.0.0.1:$NGX2/")
fi
taskset -c 0 "${load[@]}" >"$OUT/load.txt" 2>&1 &
LOAD=$!
PIDS+=("$LOAD")
sleep 2
targets=("out:$PID_OUT")
[[ $SETUP == weft-mesh ]] && targets+=("in:$PID_IN")
for t in "${targets[@]}"; do
  name=${t%%:*}; pid=${t#*:}
  perf record -q -e cpu-clock -F "$FREQ" --call-graph dwarf,16384 -p "$pid" -o "$TMP/$name.data" \
    -- sleep "$DURATION" >/dev/null 2>&1 &
  PIDS+=("$!")
done
wait "${PIDS[@]: -${#targets[@]}}" || true
wait "$LOAD" || true
echo "command: ${load[*]}" >>"$OUT/load.txt"
for t in "${targets[@]}"; do
  name=${t%%:*}
  # Flat: where the samples land (self time), by shared object and symbol.
  perf report -i "$TMP/$name.data" --stdio --no-children --sort dso,symbol --percent-limit 0.7 -g none \
    2>/dev/null | grep -v '^$' >"$OUT/$name-self.txt"
  # Inclusive: time under each function (callees included), the top 60.
  perf report -i "$TMP/$name.data" --stdio --children --sort symbol --percent-limit 2 -g none \
    2>/dev/null | grep -v '^$' | sed -n 1,80p >"$OUT/$name-children.txt"
  # Kernel vs user split.
  perf report -i "$TMP/$name.data" --stdio --no-children --sort dso -g none 2>/dev/null \
    | grep -v '^$' | grep -v '^#' | sed -n 1,15p >"$OUT/$name-dso.txt"
  [[ ${KEEP_DATA:-0} == 1 ]] && cp "$TMP/$name.data" "$OUT/"
done
echo "profile written to $OUT"
