#!/usr/bin/env bash
# Runs a two-workload mesh by hand on loopback (no Kubernetes, no root), the way `weft demo` will:
# a trust anchor and issuer made with `weft identity`, the identity service, a "web" testapp
# behind its sidecar at 127.0.1.1 and a client sidecar at 127.0.1.2 — both get 24h certificates
# and talk mTLS — then sends requests through the meshed hop and shows the proxies' metrics.
# Stops everything on exit. Pass --keep to leave it running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "building weft-proxy, weft-controller, weft and weft-testapp (release)…"
cargo build --release -q -p weft-proxy -p weft-controller -p weft-cli -p weft-testapp
bin=$PWD/target/release

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

logdir=$(mktemp -d)
export WEFT_PROXY_LOG=warn
cd "$logdir"

echo "trust anchor and issuer (weft identity), token key, workload tokens…"
"$bin/weft" identity create-root ca.crt ca.key --not-after 87600h >/dev/null
"$bin/weft" identity create-issuer issuer.crt issuer.key --ca ca.crt --ca-key ca.key --not-after 8760h >/dev/null
openssl rand -hex 32 > token.key
web_id=web.emojivoto.serviceaccount.identity.weft.cluster.local
client_id=vote-bot.emojivoto.serviceaccount.identity.weft.cluster.local
# A workload token is hex(HMAC-SHA256(token key, identity)) (see docs/identity.md).
for id in $web_id $client_id; do
  printf %s "$id" | openssl dgst -sha256 -hmac "$(cat token.key)" | awk '{print $NF}' > "$id.token"
done

"$bin/weft-controller" identity --listen 127.0.1.254:8080 --admin-listen 127.0.1.254:9990 \
  --trust-anchors ca.crt --issuer-cert issuer.crt --issuer-key issuer.key --token-key-file token.key \
  2>identity.log &
pids+=($!)
export WEFT_PROXY_IDENTITY_TRUST_ANCHORS=$logdir/ca.crt WEFT_PROXY_IDENTITY_SVC_ADDR=127.0.1.254:8080

"$bin/weft-testapp" serve --listen 127.0.1.1:8080 --name web >"$logdir/web.log" 2>&1 &
pids+=($!)
# web's sidecar: inbound on 127.0.1.1:4143 forwards to the app on 127.0.1.1:8080.
WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.1.1:4143 WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.1.1:4140 \
WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.1.1:4191 WEFT_PROXY_INBOUND_APP_ADDR=127.0.1.1:8080 \
WEFT_PROXY_OUTBOUND_BIND_IP=127.0.1.1 \
WEFT_PROXY_IDENTITY_NAME=$web_id WEFT_PROXY_IDENTITY_TOKEN_FILE=$logdir/$web_id.token \
  "$bin/weft-proxy" 2>"$logdir/web-proxy.log" &
pids+=($!)
# the client's sidecar: web-svc:80 is meshed, at web's inbound proxy, app port 8080, which must
# prove web's identity.
WEFT_PROXY_INBOUND_LISTEN_ADDR=127.0.1.2:4143 WEFT_PROXY_OUTBOUND_LISTEN_ADDR=127.0.1.2:4140 \
WEFT_PROXY_ADMIN_LISTEN_ADDR=127.0.1.2:4191 WEFT_PROXY_OUTBOUND_BIND_IP=127.0.1.2 \
WEFT_PROXY_MESHED_PEERS=web-svc:80=127.0.1.1:4143/8080@$web_id \
WEFT_PROXY_IDENTITY_NAME=$client_id WEFT_PROXY_IDENTITY_TOKEN_FILE=$logdir/$client_id.token \
  "$bin/weft-proxy" 2>"$logdir/client-proxy.log" &
pids+=($!)

for admin in 127.0.1.1:4191 127.0.1.2:4191; do
  for _ in $(seq 200); do
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
