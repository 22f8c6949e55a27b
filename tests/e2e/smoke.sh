#!/usr/bin/env bash
# End-to-end smoke test with the real grpcurl binary against `openoes dev`:
# reflection lists every service, health is SERVING, a BTC -> ETH quote works
# on the demo pools, an unbuilt RPC says
# UNIMPLEMENTED, killing Redis flips health to NOT_SERVING and restarting it
# flips it back, SIGTERM stops everything and leaves no redis-server behind.
#
# Usage: tests/e2e/smoke.sh path/to/openoes
set -uo pipefail

OPENOES=${1:?usage: smoke.sh path/to/openoes}
WORK=$(mktemp -d)
passed=0
failed=0
DEV_PID=

cleanup() {
  [ -n "$DEV_PID" ] && kill -KILL "$DEV_PID" 2>/dev/null
  for port in ${M_PORT:-} ${R_PORT:-}; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1; done
  rm -rf "$WORK"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "  ok   $*"; }
fail() { failed=$((failed + 1)); echo "  FAIL $*"; [ -f "$WORK/dev.err" ] && tail -20 "$WORK/dev.err"; }
json() { python3 -c "import json,sys; d=json.load(open('$WORK/data/dev.json')); print($1)"; }

# Polls `grpcurl Health/Check` until it prints $1, for up to $2 seconds.
health_becomes() {
  local want=$1 limit=$2 start=$SECONDS out=
  while [ $((SECONDS - start)) -lt "$limit" ]; do
    out=$(grpcurl -plaintext -max-time 2 -d '{"service":""}' "$ADDR" grpc.health.v1.Health/Check 2>&1)
    if grep -q "\"$want\"" <<<"$out"; then
      echo "$((SECONDS - start))"
      return 0
    fi
    sleep 0.2
  done
  echo "last answer: $out" >&2
  return 1
}

"$OPENOES" dev --data-dir "$WORK/data" --listen 127.0.0.1:0 >"$WORK/dev.out" 2>"$WORK/dev.err" &
DEV_PID=$!
for _ in $(seq 1 150); do [ -s "$WORK/data/dev.json" ] && break; sleep 0.2; done
if [ ! -s "$WORK/data/dev.json" ]; then
  fail "openoes dev wrote no dev.json"
  echo "smoke: $passed passed, $failed failed"
  exit 1
fi
ADDR=$(json 'd["grpc"]')
M_PORT=$(json 'd["master"]["port"]')
R_PORT=$(json 'd["replica"]["port"]')
M_PID=$(json 'd["master"]["pid"]')
R_PID=$(json 'd["replica"]["pid"]')
M_CONF=$(json 'd["master"]["conf"]')
echo "openoes dev on $ADDR (M :$M_PORT pid $M_PID, R :$R_PORT pid $R_PID)"

grep -q "grpcurl -plaintext $ADDR list" "$WORK/dev.out" && ok "dev prints grpcurl examples" || fail "dev prints grpcurl examples"

listed=$(grpcurl -plaintext "$ADDR" list 2>&1)
missing=
for s in openoes.credit.v1.CreditService openoes.pledge.v1.PledgeService \
  openoes.settlement.v1.SettlementService openoes.quote.v1.QuoteService \
  openoes.attestation.v1.AttestationService grpc.health.v1.Health grpc.reflection.v1alpha.ServerReflection; do
  grep -qx "$s" <<<"$listed" || missing="$missing $s"
done
[ -z "$missing" ] && ok "grpcurl list shows the five services, health and reflection" || fail "grpcurl list misses:$missing"

grpcurl -plaintext "$ADDR" describe openoes.credit.v1.CreditService.RequestCredit 2>&1 | grep -q "rpc RequestCredit" \
  && ok "grpcurl describe works through reflection" || fail "grpcurl describe"

t=$(health_becomes SERVING 15) && ok "health SERVING (after ${t}s)" || fail "health never SERVING"

out=$(grpcurl -plaintext -d '{"pledge_id":"p-1"}' "$ADDR" openoes.pledge.v1.PledgeService/GetPledge 2>&1)
grep -q "Code: Unimplemented" <<<"$out" && grep -q '"reason":"NOT_IMPLEMENTED"' <<<"$out" \
  && ok "an RPC not built yet answers UNIMPLEMENTED with ErrorInfo" || fail "UNIMPLEMENTED answer: $out"

out=$(grpcurl -plaintext -d '{"token_in":"BTC","token_out":"ETH","amount":"100000000","slippage_bps":50}' "$ADDR" openoes.quote.v1.QuoteService/GetQuote 2>&1)
pools=$(python3 -c "import json,sys; q=json.loads(sys.stdin.read())['quote']; print(' '.join(h['poolId'] for h in q['hops']), q['amountOut'])" <<<"$out" 2>/dev/null)
[[ "$pools" == "BTC-USDC ETH-USDC "* ]] && ok "GetQuote BTC -> ETH on the demo pools: $pools" || fail "GetQuote BTC -> ETH: $out"

kill -KILL "$M_PID"
t=$(health_becomes NOT_SERVING 10) && ok "SIGKILL of the master: health NOT_SERVING after ${t}s" || fail "health stayed SERVING with the master dead"

redis-server "$M_CONF" --daemonize yes >/dev/null
t=$(health_becomes SERVING 10) && ok "master restarted: health SERVING after ${t}s" || fail "health did not recover"

kill -TERM "$DEV_PID"
start=$SECONDS
while kill -0 "$DEV_PID" 2>/dev/null && [ $((SECONDS - start)) -lt 20 ]; do sleep 0.2; done
if kill -0 "$DEV_PID" 2>/dev/null; then
  fail "openoes dev still running 20s after SIGTERM"
else
  wait "$DEV_PID"
  code=$?
  DEV_PID=
  [ "$code" = 0 ] && ok "SIGTERM: openoes dev exited 0 in $((SECONDS - start))s" || fail "openoes dev exited $code"
fi
sleep 0.5
left=
for port in $M_PORT $R_PORT; do redis-cli -p "$port" ping >/dev/null 2>&1 && left="$left :$port"; done
kill -0 "$R_PID" 2>/dev/null && left="$left pid $R_PID"
[ -z "$left" ] && ok "no redis-server left behind" || fail "redis-server left behind:$left"

echo "smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
