#!/usr/bin/env bash
# Runs a two-workload mesh by hand on loopback (no Kubernetes, no root), the way `weft demo` will:
# a "web" testapp behind its sidecar at 127.0.1.1 and a client sidecar at 127.0.1.2, then sends
# requests through the meshed hop and shows the proxies' metrics. Stops everything on exit.
# Pass --keep to leave it running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "building weft-proxy and weft-testapp (release)…"
cargo build --release -q -p weft-proxy -p weft-testapp
bin=target/release

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

logdir=$(mktemp -d)
export WEFT_PROXY_IDENTITY_DISABLED=true WEFT_PROXY_LOG=warn

"$bin/weft-testapp" serve --listen 127.0.1.1:8080 --name web >"$logdir/web.log" 2>&1 &
pids+=($!)
# web's sidecar: inbound on 127.0.1.1:4143 forwards to the app on 127.0.1.1:8080.
WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.1.1:4143 WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.1.1:4140 \
WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.1.1:4191 WEFT_PROXY_INBOUND_APP_ADDR=127.0.1.1:8080 \
WEFT_PROXY_OUTBOUND_BIND_IP=127.0.1.1 \
  "$bin/weft-proxy" 2>"$logdir/web-proxy.log" &
pids+=($!)
# the client's sidecar: web-svc:80 is meshed, at web's inbound proxy, app port 8080.
WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.1.2:4143 WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.1.2:4140 \
WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.1.2:4191 WEFT_PROXY_OUTBOUND_BIND_IP=127.0.1.2 \
WEFT_PROXY_MESHED_PEERS=web-svc:80=127.0.1.1:4143/8080 \
  "$bin/weft-proxy" 2>"$logdir/client-proxy.log" &
pids+=($!)

for admin in 127.0.1.1:4191 127.0.1.2:4191; do
  for _ in $(seq 100); do
    curl -sf "http://$admin/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf "http://$admin/ready" >/dev/null || { echo "proxy at $admin did not become ready; logs in $logdir"; exit 1; }
done

echo
echo "\$ curl -x http://127.0.1.2:4140 http://web-svc/headers"
curl -sS -x http://127.0.1.2:4140 http://web-svc/headers
echo
echo "\$ curl --http2-prior-knowledge -H 'Host: web-svc' http://127.0.1.2:4140/"
curl -sS --http2-prior-knowledge -H 'Host: web-svc' http://127.0.1.2:4140/
echo
echo "client sidecar metrics (curl -s http://127.0.1.2:4191/metrics | grep ^request_total):"
curl -s http://127.0.1.2:4191/metrics | grep '^request_total'
echo "web sidecar metrics (curl -s http://127.0.1.1:4191/metrics | grep ^request_total):"
curl -s http://127.0.1.1:4191/metrics | grep '^request_total'

if [ "${1:-}" = "--keep" ]; then
  echo
  echo "running; try: curl -x http://127.0.1.2:4140 http://web-svc/   (Ctrl-C stops everything; logs in $logdir)"
  wait
fi
