#!/usr/bin/env bash
# End-to-end smoke test of `openoes dev --auth` with the real grpcurl binary:
# TLS with dev's throwaway CA (-cacert) and a bearer token per role
# (-H "authorization: Bearer ..."). Health is open; the README's credit flow
# works with each party holding its own token (the exchange subscribes and
# accepts, the WSP asks, a reader reads); a wrong-role token is
# PERMISSION_DENIED (ROLE_NOT_ALLOWED), no token UNAUTHENTICATED
# (MISSING_CREDENTIAL), plaintext gets nowhere; every write leaves an audit
# line. Then the secrets check: no token of tokens.toml and no Redis password
# of passwords.toml appears in any line dev logged (at debug level), while
# the banner on stdout, which exists to hand them out, does print the tokens.
# SIGTERM stops everything and leaves no redis-server behind.
#
# Usage: tests/e2e/smoke_auth.sh path/to/openoes
# tests/e2e/smoke.sh runs it after its own run, with its own data dir and
# ports (dev picks free Redis ports; --listen 127.0.0.1:0 a free gRPC port).
set -uo pipefail

OPENOES=${1:?usage: smoke_auth.sh path/to/openoes}
WORK=$(mktemp -d)
passed=0
failed=0
DEV_PID=
SUB_PID=

cleanup() {
  [ -n "$DEV_PID" ] && kill -KILL "$DEV_PID" 2>/dev/null
  [ -n "$SUB_PID" ] && kill "$SUB_PID" 2>/dev/null
  for url in ${M_ADMIN:-} ${R_ADMIN:-}; do redis-cli --no-auth-warning -u "$url" shutdown nosave >/dev/null 2>&1; done
  rm -rf "$WORK"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "  ok   $*"; }
fail() { failed=$((failed + 1)); echo "  FAIL $*"; [ -f "$WORK/dev.err" ] && tail -20 "$WORK/dev.err"; }
json() { python3 -c "import json,sys; d=json.load(open('$WORK/data/dev.json')); print($1)"; }

# Debug level: the secrets check below reads every line dev logs.
NO_COLOR=1 OPENOES__LOG__FILTER=debug "$OPENOES" dev --auth --data-dir "$WORK/data" --listen 127.0.0.1:0 \
  >"$WORK/dev.out" 2>"$WORK/dev.err" &
DEV_PID=$!
for _ in $(seq 1 150); do [ -s "$WORK/data/dev.json" ] && break; sleep 0.2; done
if [ ! -s "$WORK/data/dev.json" ]; then
  fail "openoes dev --auth wrote no dev.json"
  echo "smoke (auth): $passed passed, $failed failed"
  exit 1
fi
ADDR=$(json 'd["grpc"]')
CA=$(json 'd["ca"]')
TOKENS=$(json 'd["tokens"]')
PASSWORDS=$(json 'd["passwords"]')
M_PORT=$(json 'd["master"]["port"]')
R_PORT=$(json 'd["replica"]["port"]')
R_PID=$(json 'd["replica"]["pid"]')
M_ADMIN=$(json 'd["master"]["admin_url"]')
R_ADMIN=$(json 'd["replica"]["admin_url"]')
echo "openoes dev --auth on $ADDR (CA $CA, tokens $TOKENS)"
# token ROLE: that role's token from tokens.toml (`role = "token"` lines).
token() { python3 -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb'))[sys.argv[2]])" "$TOKENS" "$1"; }
WSP=$(token wsp)
EXCHANGE=$(token exchange)
READER=$(token reader)
[ -n "$WSP" ] && [ -n "$EXCHANGE" ] && [ -n "$READER" ] && ok "tokens.toml holds a token per role" || fail "tokens.toml: $(cat "$TOKENS")"
# as ROLE_TOKEN ARGS...: grpcurl over TLS with that bearer token.
as() { local t=$1; shift; grpcurl -cacert "$CA" -H "authorization: Bearer $t" "$@"; }

grep -q -- "-cacert $CA -H \"authorization: Bearer \$OES_<ROLE>\"" "$WORK/dev.out" \
  && ok "dev --auth prints the grpcurl flags (-cacert, -H authorization)" || fail "banner: $(cat "$WORK/dev.out")"

start=$SECONDS
out=
while [ $((SECONDS - start)) -lt 15 ]; do
  out=$(grpcurl -cacert "$CA" -max-time 2 -d '{"service":""}' "$ADDR" grpc.health.v1.Health/Check 2>&1)
  grep -q '"SERVING"' <<<"$out" && break
  sleep 0.2
done
grep -q '"SERVING"' <<<"$out" && ok "health over TLS, no token: SERVING" || fail "health: $out"

out=$(grpcurl -plaintext -max-time 5 -d '{"service":""}' "$ADDR" grpc.health.v1.Health/Check 2>&1)
grep -q '"SERVING"' <<<"$out" && fail "plaintext on the TLS port was served: $out" || ok "plaintext on the TLS port gets nowhere"

C=openoes.credit.v1.CreditService
as "$EXCHANGE" -d '{}' "$ADDR" $C/SubscribeCreditRequests >"$WORK/sub.out" 2>&1 &
SUB_PID=$!
out=$(as "$WSP" -d '{"user_id":"alice","asset":"BTC","change":"+1.5","chain":"bitcoin","address":"bc1qdemo","request_id":"demo-1"}' "$ADDR" $C/RequestCredit 2>&1)
grep -q CREDIT_REQUEST_STATUS_PENDING <<<"$out" && ok "WSP token: RequestCredit +1.5 BTC for alice is PENDING" || fail "RequestCredit: $out"
for _ in $(seq 1 50); do grep -q '"requestId": "demo-1"' "$WORK/sub.out" && break; sleep 0.2; done
grep -q '"requestId": "demo-1"' "$WORK/sub.out" && ok "exchange token: SubscribeCreditRequests delivers demo-1" || fail "no delivery: $(cat "$WORK/sub.out")"
out=$(as "$EXCHANGE" -d '{"request_id":"demo-1","decision":"CREDIT_DECISION_ACCEPT"}' "$ADDR" $C/RespondToCreditRequest 2>&1)
grep -q CREDIT_DECISION_ACCEPT <<<"$out" && ok "exchange token: RespondToCreditRequest accepts it" || fail "RespondToCreditRequest: $out"
for _ in $(seq 1 50); do
  out=$(as "$WSP" -d '{"request_id":"demo-1"}' "$ADDR" $C/GetCreditRequest 2>&1)
  grep -q CREDIT_REQUEST_STATUS_ACCEPTED <<<"$out" && break
  sleep 0.2
done
grep -q CREDIT_REQUEST_STATUS_ACCEPTED <<<"$out" && ok "WSP token: GetCreditRequest shows ACCEPTED" || fail "GetCreditRequest: $out"
out=$(as "$READER" -d '{"user_id":"alice","asset":"BTC"}' "$ADDR" $C/GetCreditInventory 2>&1)
grep -q '"amount": "1.5"' <<<"$out" && ok "reader token: GetCreditInventory shows 1.5 BTC of credit" || fail "GetCreditInventory: $out"
kill "$SUB_PID" 2>/dev/null
SUB_PID=

out=$(as "$READER" -d '{"user_id":"alice","asset":"BTC","change":"+1","chain":"bitcoin","address":"bc1qdemo","request_id":"demo-2"}' "$ADDR" $C/RequestCredit 2>&1)
grep -q "Code: PermissionDenied" <<<"$out" && grep -q '"reason":"ROLE_NOT_ALLOWED"' <<<"$out" \
  && ok "reader token: RequestCredit is PERMISSION_DENIED, ROLE_NOT_ALLOWED" || fail "wrong role: $out"
out=$(as "$WSP" -d '{"request_id":"demo-1","decision":"CREDIT_DECISION_REJECT","reject_reason":"no"}' "$ADDR" $C/RespondToCreditRequest 2>&1)
grep -q "Code: PermissionDenied" <<<"$out" && grep -q '"reason":"ROLE_NOT_ALLOWED"' <<<"$out" \
  && ok "WSP token: RespondToCreditRequest is PERMISSION_DENIED, ROLE_NOT_ALLOWED" || fail "WSP answers: $out"
out=$(grpcurl -cacert "$CA" -d '{"user_id":"alice","asset":"BTC"}' "$ADDR" $C/GetCreditInventory 2>&1)
grep -q "Code: Unauthenticated" <<<"$out" && grep -q '"reason":"MISSING_CREDENTIAL"' <<<"$out" \
  && ok "no token: GetCreditInventory is UNAUTHENTICATED, MISSING_CREDENTIAL" || fail "no token: $out"
# -rpc-header: reflection (open in dev) asks without it; a bad token is
# refused on reflection too.
out=$(grpcurl -cacert "$CA" -rpc-header "authorization: Bearer oes_not-a-token" -d '{"user_id":"alice","asset":"BTC"}' "$ADDR" $C/GetCreditInventory 2>&1)
grep -q "Code: Unauthenticated" <<<"$out" && grep -q '"reason":"UNKNOWN_CREDENTIAL"' <<<"$out" \
  && ok "an unknown token: UNAUTHENTICATED, UNKNOWN_CREDENTIAL" || fail "unknown token: $out"

grep " audit: " "$WORK/dev.err" | grep "principal=dev-wsp" | grep -q "CreditService/RequestCredit .*code=\"OK\"" \
  && ok "the audit trail has dev-wsp's RequestCredit" || fail "no audit line for RequestCredit: $(grep -c audit "$WORK/dev.err") audit lines"

kill -TERM "$DEV_PID"
start=$SECONDS
while kill -0 "$DEV_PID" 2>/dev/null && [ $((SECONDS - start)) -lt 20 ]; do sleep 0.2; done
if kill -0 "$DEV_PID" 2>/dev/null; then
  fail "openoes dev --auth still running 20s after SIGTERM"
else
  wait "$DEV_PID"
  code=$?
  DEV_PID=
  [ "$code" = 0 ] && ok "SIGTERM: openoes dev --auth exited 0" || fail "openoes dev --auth exited $code"
fi

# Secrets: every token and Redis password dev made, against every line it
# logged. The check is not empty: the log has lines, and the banner (stdout,
# meant to hand tokens out) does contain them.
secrets=$(python3 -c "
import sys, tomllib
for f in sys.argv[1:]:
    for v in tomllib.load(open(f, 'rb')).values():
        print(v)
" "$TOKENS" "$PASSWORDS")
count=$(wc -l <<<"$secrets")
leaked=
while read -r secret; do
  [ -n "$secret" ] && grep -qF -- "$secret" "$WORK/dev.err" && leaked="$leaked ${secret:0:6}..."
done <<<"$secrets"
lines=$(wc -l <"$WORK/dev.err")
if [ "$count" -ge 12 ] && [ "$lines" -gt 20 ] && grep -qF -- "$WSP" "$WORK/dev.out" && [ -z "$leaked" ]; then
  ok "none of $count secrets (7 tokens, 5 Redis passwords) in $lines debug log lines"
else
  fail "secrets in the log:${leaked:- none} ($count secrets, $lines lines)"
fi

sleep 0.5
left=
for port in $M_PORT $R_PORT; do redis-cli -p "$port" ping 2>&1 | grep -qE 'PONG|NOAUTH' && left="$left :$port"; done
kill -0 "$R_PID" 2>/dev/null && left="$left pid $R_PID"
[ -z "$left" ] && ok "no redis-server left behind" || fail "redis-server left behind:$left"

echo "smoke (auth): $passed passed, $failed failed"
[ "$failed" = 0 ]
