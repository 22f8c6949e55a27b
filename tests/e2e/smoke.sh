#!/usr/bin/env bash
# End-to-end smoke test with the real grpcurl binary against `openoes dev`:
# reflection lists every service, health is SERVING, a BTC -> ETH quote works
# on the demo pools, the README's credit and pledge walk-throughs work step
# by step, the Python, TypeScript and Go client examples walk the first (and resume a
# WatchCreditEvents by cursor) through stubs generated here, an unknown
# settlement report is NOT_FOUND, killing Redis flips health to NOT_SERVING and
# restarting it flips it back, SIGTERM stops everything and leaves no
# redis-server behind. The attestation walk-through: SubmitVerification and
# a plain redis-cli XADD both become credentials, verify, revoke, the signed
# status list, the Python offline verifier, bad input and a dead letter.
# The settlement walk-through, with the very requests `openoes dev` prints:
# bob's report submitted and recorded, confirmed into his credit, its cycle
# closed, verified and countersigned; his proof (and the tlog proof text
# alone) verified offline by verify_settlement.py against GetSigningKeys,
# and a changed one refused. No Redis password reaches dev's log. Then
# tests/e2e/smoke_auth.sh walks the credit flow against `openoes dev --auth`
# (TLS, a token per role, refusals, no token or password in its debug log).
#
# Usage: tests/e2e/smoke.sh path/to/openoes [python]
# python: one with clients/python/requirements.txt installed (default python3).
# The TypeScript client needs clients/typescript/node_modules (npm ci), the Go
# client Debian's Go packages: scripts/lib.sh's ensure_ts_client and
# ensure_go_client install them, as scripts/test does.
set -uo pipefail

OPENOES=${1:?usage: smoke.sh path/to/openoes [python]}
PYTHON=${2:-python3}
# Absolute, since each client runs in its own directory (a venv's python is
# a symlink that must stay one: no realpath).
case $PYTHON in */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;; esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
passed=0
failed=0
DEV_PID=
SUB_PID=

cleanup() {
  [ -n "$DEV_PID" ] && kill -KILL "$DEV_PID" 2>/dev/null
  [ -n "$SUB_PID" ] && kill "$SUB_PID" 2>/dev/null
  for url in ${M_ADMIN:-} ${R_ADMIN:-}; do redis-cli -u "$url" shutdown nosave >/dev/null 2>&1; done
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
M_ADMIN=$(json 'd["master"]["admin_url"]')
R_ADMIN=$(json 'd["replica"]["admin_url"]')
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

out=$(grpcurl -plaintext -d '{"report_id":"s-1"}' "$ADDR" openoes.settlement.v1.SettlementService/GetSettlementReport 2>&1)
grep -q "Code: NotFound" <<<"$out" && grep -q '"reason":"NOT_FOUND"' <<<"$out" \
  && ok "GetSettlementReport of an unknown report: NOT_FOUND with ErrorInfo" || fail "unknown report: $out"

out=$(grpcurl -plaintext -d '{"token_in":"BTC","token_out":"ETH","amount":"100000000","slippage_bps":50}' "$ADDR" openoes.quote.v1.QuoteService/GetQuote 2>&1)
pools=$(python3 -c "import json,sys; q=json.loads(sys.stdin.read())['quote']; print(' '.join(h['poolId'] for h in q['hops']), q['amountOut'])" <<<"$out" 2>/dev/null)
[[ "$pools" == "BTC-USDC ETH-USDC "* ]] && ok "GetQuote BTC -> ETH on the demo pools: $pools" || fail "GetQuote BTC -> ETH: $out"

# The README's credit walk-through, step by step.
C=openoes.credit.v1.CreditService
grpcurl -plaintext -d '{}' "$ADDR" $C/SubscribeCreditRequests >"$WORK/sub.out" 2>&1 &
SUB_PID=$!
out=$(grpcurl -plaintext -d '{"user_id":"alice","asset":"BTC","change":"+1.5","chain":"bitcoin","address":"bc1qdemo","request_id":"demo-1"}' "$ADDR" $C/RequestCredit 2>&1)
grep -q CREDIT_REQUEST_STATUS_PENDING <<<"$out" && grep -q '"expectedCi": "1.5"' <<<"$out" \
  && ok "WSP: RequestCredit +1.5 BTC for alice is PENDING, expected CI 1.5" || fail "RequestCredit: $out"
for _ in $(seq 1 50); do grep -q '"requestId": "demo-1"' "$WORK/sub.out" && break; sleep 0.2; done
grep -q '"requestId": "demo-1"' "$WORK/sub.out" && ok "exchange: SubscribeCreditRequests delivers demo-1" || fail "no delivery: $(cat "$WORK/sub.out")"
out=$(grpcurl -plaintext -d '{"request_id":"demo-1","decision":"CREDIT_DECISION_ACCEPT"}' "$ADDR" $C/RespondToCreditRequest 2>&1)
grep -q CREDIT_DECISION_ACCEPT <<<"$out" && ok "exchange: RespondToCreditRequest accepts it" || fail "RespondToCreditRequest: $out"
for _ in $(seq 1 50); do
  out=$(grpcurl -plaintext -d '{"request_id":"demo-1"}' "$ADDR" $C/GetCreditRequest 2>&1)
  grep -q CREDIT_REQUEST_STATUS_ACCEPTED <<<"$out" && break
  sleep 0.2
done
grep -q CREDIT_REQUEST_STATUS_ACCEPTED <<<"$out" && ok "WSP: GetCreditRequest shows ACCEPTED" || fail "GetCreditRequest: $out"
out=$(grpcurl -plaintext -d '{"user_id":"alice","asset":"BTC"}' "$ADDR" $C/GetCreditInventory 2>&1)
grep -q '"amount": "1.5"' <<<"$out" && ok "GetCreditInventory: alice has 1.5 BTC of credit" || fail "GetCreditInventory: $out"
out=$(grpcurl -plaintext -max-time 2 -d '{"start_after_event_id":"0-0"}' "$ADDR" $C/WatchCreditEvents 2>&1)
grep -q CREDIT_EVENT_TYPE_REQUESTED <<<"$out" && grep -q CREDIT_EVENT_TYPE_ACCEPTED <<<"$out" \
  && ok "WatchCreditEvents replays requested and accepted" || fail "WatchCreditEvents: $out"
out=$(grpcurl -plaintext -d '{"user_id":"alice","asset":"BTC","change":"1.5","chain":"bitcoin","address":"bc1qdemo"}' "$ADDR" $C/RequestCredit 2>&1)
grep -q "Code: InvalidArgument" <<<"$out" && grep -q '"field":"change"' <<<"$out" \
  && ok "a change without its sign: INVALID_ARGUMENT naming the field" || fail "bad change: $out"

# The README's pledge walk-through: custody arrives, a pledge asks the
# exchange (the same subscriber) for credit, a release gives some back.
P=openoes.pledge.v1.PledgeService
# accept ID: waits for ID's delivery on the subscription, then accepts it.
accept() {
  for _ in $(seq 1 50); do grep -q "\"requestId\": \"$1\"" "$WORK/sub.out" && break; sleep 0.2; done
  grpcurl -plaintext -d "{\"request_id\":\"$1\",\"decision\":\"CREDIT_DECISION_ACCEPT\"}" "$ADDR" $C/RespondToCreditRequest >/dev/null 2>&1
}
out=$(grpcurl -plaintext -d '{"request_id":"dep-1","user_id":"bob","asset":"BTC","amount":"10","chain":"bitcoin","address":"bc1qbob","tx_id":"f00d"}' "$ADDR" $P/RecordDeposit 2>&1)
grep -q '"available": "10"' <<<"$out" && ok "RecordDeposit: 10 BTC in bob's vault" || fail "RecordDeposit: $out"
out=$(grpcurl -plaintext -d '{"request_id":"pledge-1","user_id":"bob","asset":"BTC","amount":"4","chain":"bitcoin","address":"bc1qbob"}' "$ADDR" $P/CreatePledge 2>&1)
grep -q PLEDGE_STATUS_PENDING <<<"$out" && ok "CreatePledge 4 BTC: PENDING, sent as a credit increase" || fail "CreatePledge: $out"
accept pledge-1
for _ in $(seq 1 50); do
  out=$(grpcurl -plaintext -d '{"pledge_id":"pledge-1"}' "$ADDR" $P/GetPledge 2>&1)
  grep -q PLEDGE_STATUS_ACTIVE <<<"$out" && break
  sleep 0.2
done
grep -q PLEDGE_STATUS_ACTIVE <<<"$out" && ok "the exchange accepts: GetPledge shows ACTIVE" || fail "GetPledge: $out"
out=$(grpcurl -plaintext -d '{"user_id":"bob","asset":"BTC"}' "$ADDR" $P/GetVaultBalance 2>&1)
grep -q '"locked": "4"' <<<"$out" && grep -q '"available": "6"' <<<"$out" \
  && ok "GetVaultBalance: locked 4, available 6" || fail "GetVaultBalance: $out"
out=$(grpcurl -plaintext -d '{"request_id":"release-1","user_id":"bob","asset":"BTC","amount":"1.5"}' "$ADDR" $P/ReleasePledge 2>&1)
grep -q RELEASE_STATUS_PENDING <<<"$out" && ok "ReleasePledge 1.5 BTC: PENDING, sent as a credit decrease" || fail "ReleasePledge: $out"
accept release-1
for _ in $(seq 1 50); do
  out=$(grpcurl -plaintext -d '{"release_id":"release-1"}' "$ADDR" $P/GetPledgeRelease 2>&1)
  grep -q RELEASE_STATUS_COMPLETED <<<"$out" && break
  sleep 0.2
done
grep -q RELEASE_STATUS_COMPLETED <<<"$out" && grep -q '"amount": "1.5"' <<<"$out" \
  && ok "GetPledgeRelease: COMPLETED, 1.5 unlocked from pledge-1" || fail "GetPledgeRelease: $out"
out=$(grpcurl -plaintext -d '{"user_id":"bob","asset":"BTC"}' "$ADDR" $C/GetCreditInventory 2>&1)
grep -q '"amount": "2.5"' <<<"$out" && ok "GetCreditInventory: bob has 2.5 BTC of credit" || fail "bob's CI: $out"
out=$(grpcurl -plaintext -max-time 2 -d '{"start_after_event_id":"0-0","user_id":"bob"}' "$ADDR" $P/WatchPledgeEvents 2>&1)
grep -q PLEDGE_EVENT_TYPE_DEPOSIT_RECORDED <<<"$out" && grep -q PLEDGE_EVENT_TYPE_PLEDGE_ACTIVE <<<"$out" \
  && grep -q PLEDGE_EVENT_TYPE_RELEASE_COMPLETED <<<"$out" \
  && ok "WatchPledgeEvents replays deposit, pledge and release" || fail "WatchPledgeEvents: $out"
kill "$SUB_PID" 2>/dev/null
SUB_PID=

# The settlement walk-through, with the requests `openoes dev` prints (bob's
# BTC credit is real now: the pledge above). example METHOD: the -d JSON of
# dev's example of METHOD.
S=openoes.settlement.v1.SettlementService
example() { grep -F "$S/$1" "$WORK/dev.out" | sed -n "s/.*-d '\([^']*\)' .*/\1/p" | head -1; }
missing=
for m in SubmitSettlementReport ConfirmSettlement CloseSettlementCycle GetSettlementProof GetSigningKeys; do
  [ -n "$(example $m)" ] || missing="$missing $m"
done
[ -z "$missing" ] && ok "dev prints the settlement examples" || fail "dev prints no settlement example of:$missing"
out=$(grpcurl -plaintext -d "$(example SubmitSettlementReport)" "$ADDR" $S/SubmitSettlementReport 2>&1)
grep -q SETTLEMENT_STATUS_REPORTED <<<"$out" && grep -q DELIVERY_RECORDED <<<"$out" \
  && ok "exchange: SubmitSettlementReport rep-1 (bob sells 0.25 BTC for 25000 USDC): REPORTED, RECORDED by the WSP" \
  || fail "SubmitSettlementReport: $out"
out=$(grpcurl -plaintext -d "$(example ConfirmSettlement)" "$ADDR" $S/ConfirmSettlement 2>&1)
grep -q SETTLEMENT_STATUS_COMPLETED <<<"$out" && ok "WSP: ConfirmSettlement rep-1: COMPLETED" || fail "ConfirmSettlement: $out"
btc=$(grpcurl -plaintext -d '{"user_id":"bob","asset":"BTC"}' "$ADDR" $C/GetCreditInventory 2>&1)
usdc=$(grpcurl -plaintext -d '{"user_id":"bob","asset":"USDC"}' "$ADDR" $C/GetCreditInventory 2>&1)
grep -q '"amount": "2.25"' <<<"$btc" && grep -q '"amount": "25000"' <<<"$usdc" \
  && ok "the nets applied: bob has 2.25 BTC and 25000 USDC of credit" || fail "bob's CI after settlement: $btc $usdc"
out=$(grpcurl -plaintext -d "$(example CloseSettlementCycle)" "$ADDR" $S/CloseSettlementCycle 2>&1)
grep -q DELIVERY_RECORDED <<<"$out" && grep -q '"size": "1"' <<<"$out" \
  && ok "exchange: CloseSettlementCycle day-1: a signed tree of 1 report, RECORDED by the WSP" || fail "CloseSettlementCycle: $out"
for _ in $(seq 1 50); do
  out=$(grpcurl -plaintext -d '{"cycle_id":"day-1"}' "$ADDR" $S/GetSettlementCycle 2>&1)
  grep -q CYCLE_STATUS_COSIGNED <<<"$out" && break
  sleep 0.2
done
grep -q CYCLE_STATUS_COSIGNED <<<"$out" && ok "GetSettlementCycle day-1: COSIGNED (every report decided)" || fail "GetSettlementCycle: $out"
grpcurl -plaintext -d "$(example GetSettlementProof)" "$ADDR" $S/GetSettlementProof >"$WORK/proof.json" 2>&1
grep -q '"tlogProof": "c2sp.org/tlog-proof@v1' "$WORK/proof.json" \
  && ok "GetSettlementProof rep-1: the leaf and a C2SP tlog proof" || fail "GetSettlementProof: $(cat "$WORK/proof.json")"
grpcurl -plaintext -d "$(example GetSigningKeys)" "$ADDR" $S/GetSigningKeys >"$WORK/keys.json" 2>&1
grep -q '"role": "exchange"' "$WORK/keys.json" && grep -q '"role": "wsp"' "$WORK/keys.json" \
  && ok "GetSigningKeys: the exchange's and the WSP's vkeys" || fail "GetSigningKeys: $(cat "$WORK/keys.json")"
# Offline, the standard library only (system python3, as the README says).
out=$(python3 "$ROOT/clients/python/verify_settlement.py" "$WORK/proof.json" --keys "$WORK/keys.json" --report-id rep-1 --user-id bob 2>&1)
[ "$(head -1 <<<"$out")" = OK ] && grep -q "signed by openoes-dev-exchange/settlement+.*openoes-dev-wsp/settlement+" <<<"$out" \
  && ok "verify_settlement.py: OK offline, signed by both keys of GetSigningKeys" || fail "verify_settlement.py: $out"
python3 -c "
import json, sys
p = json.load(open(sys.argv[1]))['proof']
open(sys.argv[2], 'w').write(p['tlogProof'])
open(sys.argv[3], 'w').write(p['leaf'])
p['leaf'] = p['leaf'].replace('\"+25000\"', '\"+250000\"')
json.dump({'proof': p}, open(sys.argv[4], 'w'))
" "$WORK/proof.json" "$WORK/proof.tlog" "$WORK/leaf.json" "$WORK/changed.json"
out=$(python3 "$ROOT/clients/python/verify_settlement.py" "$WORK/proof.tlog" --leaf "$WORK/leaf.json" --keys "$WORK/keys.json" 2>&1)
[ "$(head -1 <<<"$out")" = OK ] && ok "verify_settlement.py: the tlog proof text alone, with the leaf, OK" || fail "tlog proof alone: $out"
out=$(python3 "$ROOT/clients/python/verify_settlement.py" "$WORK/changed.json" --keys "$WORK/keys.json" 2>&1)
code=$?
[ "$code" = 1 ] && grep -q "^  leaf hash: " <<<"$out" && grep -q "^  root: " <<<"$out" \
  && ok "verify_settlement.py: a proof whose amount was changed fails (leaf hash, root)" || fail "changed proof (exit $code): $out"

# The README's attestation walk-through, step by step.
A=openoes.attestation.v1.AttestationService
# Now: a credential is valid for 365 days after its verification.
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
NAIVE=${NOW%Z}
grep -q "$A/SubmitVerification" "$WORK/dev.out" && ok "dev prints the attestation examples" || fail "dev prints no attestation examples"
out=$(grpcurl -plaintext -d '{"request_id":"kyc-1","subject":"0xabc","did_type":"kyc","result":"VERIFICATION_RESULT_PASSED","evidence_hash":"abc123","verified_at":"'"$NOW"'"}' "$ADDR" $A/SubmitVerification 2>&1)
ATT1=$(python3 -c "import json,sys; print(json.loads(sys.stdin.read())['attestationId'])" <<<"$out" 2>/dev/null)
[ -n "$ATT1" ] && ok "SubmitVerification: attestation $ATT1 on its way" || fail "SubmitVerification: $out"
entry=$(redis-cli --no-auth-warning -u "$M_ADMIN" XADD verification_stream '*' user_wallet 0xabc did_id 0 result verified evidence_hash abc123 verified_at "$NAIVE" 2>&1)
[[ "$entry" =~ ^[0-9]+-[0-9]+$ ]] && ok "a producer without gRPC: redis-cli XADD verification_stream ($entry)" || fail "XADD: $entry"
for _ in $(seq 1 50); do
  out=$(grpcurl -plaintext -d '{"subject":"0xabc"}' "$ADDR" $A/ListAttestations 2>&1)
  [ "$(grep -c '"attestationId"' <<<"$out")" = 2 ] && break
  sleep 0.2
done
[ "$(grep -c '"attestationId"' <<<"$out")" = 2 ] && ok "ListAttestations: both results of 0xabc are attestations" || fail "ListAttestations: $out"
out=$(grpcurl -plaintext -d "{\"attestation_id\":\"$ATT1\"}" "$ADDR" $A/GetAttestation 2>&1)
python3 -c "import json,sys; a=json.loads(sys.stdin.read())['attestation']; open('$WORK/cred.json','w').write(a['credentialJson'])" <<<"$out" 2>/dev/null
grep -q '"eddsa-jcs-2022"' "$WORK/cred.json" 2>/dev/null && ok "GetAttestation: a Verifiable Credential with an eddsa-jcs-2022 proof" || fail "GetAttestation: $out"
out=$(grpcurl -plaintext -d "{\"attestation_id\":\"$ATT1\"}" "$ADDR" $A/VerifyAttestation 2>&1)
grep -q '"valid": true' <<<"$out" && ok "VerifyAttestation: valid" || fail "VerifyAttestation: $out"
DID=$(grpcurl -plaintext -d '{}' "$ADDR" $A/GetIssuerKey 2>&1 | python3 -c "import json,sys; print(json.loads(sys.stdin.read())['didKey'])" 2>/dev/null)
out=$("$PYTHON" "$ROOT/clients/python/verify_attestation.py" "$WORK/cred.json" --public-key "$DID" 2>&1)
[ "$out" = OK ] && ok "verify_attestation.py: OK offline against GetIssuerKey's $DID" || fail "verify_attestation.py: $out"
out=$(grpcurl -plaintext -d "{\"attestation_id\":\"$ATT1\",\"reason\":\"demo\"}" "$ADDR" $A/RevokeAttestation 2>&1)
grep -q ATTESTATION_STATUS_REVOKED <<<"$out" && ok "RevokeAttestation: REVOKED" || fail "RevokeAttestation: $out"
out=$(grpcurl -plaintext -d "{\"attestation_id\":\"$ATT1\"}" "$ADDR" $A/VerifyAttestation 2>&1)
grep -q VERIFICATION_CHECK_REVOCATION <<<"$out" && ok "VerifyAttestation after revocation: fails REVOCATION" || fail "VerifyAttestation revoked: $out"
out=$(grpcurl -plaintext -d '{"status_list_id":"1"}' "$ADDR" $A/GetStatusList 2>&1)
python3 -c "import json,sys; open('$WORK/list.json','w').write(json.loads(sys.stdin.read())['credentialJson'])" <<<"$out" 2>/dev/null
out=$("$PYTHON" "$ROOT/clients/python/verify_attestation.py" "$WORK/cred.json" --public-key "$DID" --status-list "$WORK/list.json" 2>&1)
grep -q "revocation: revoked" <<<"$out" && ok "GetStatusList: the signed list shows it revoked to verify_attestation.py" || fail "status list check: $out"
out=$(grpcurl -plaintext -d '{"request_id":"kyc-2","subject":"0xabc","did_type":"kyc","result":"VERIFICATION_RESULT_PASSED","evidence_hash":"xyz","verified_at":"'"$NOW"'"}' "$ADDR" $A/SubmitVerification 2>&1)
grep -q "Code: InvalidArgument" <<<"$out" && grep -q '"field":"evidence_hash"' <<<"$out" \
  && ok "evidence_hash not hex: INVALID_ARGUMENT naming the field" || fail "bad evidence_hash: $out"
redis-cli --no-auth-warning -u "$M_ADMIN" XADD verification_stream '*' user_wallet 0xabc did_id 0 result maybe evidence_hash abc123 verified_at "$NAIVE" >/dev/null 2>&1
for _ in $(seq 1 50); do
  out=$(grpcurl -plaintext -d '{}' "$ADDR" $A/ListDeadLetters 2>&1)
  grep -q UNKNOWN_RESULT <<<"$out" && break
  sleep 0.2
done
grep -q UNKNOWN_RESULT <<<"$out" && ok "result \"maybe\": dead-lettered, ListDeadLetters says UNKNOWN_RESULT" || fail "ListDeadLetters: $out"

# The same flow (plus a WatchCreditEvents resume by cursor) through each
# client example's stubs, generated here from proto/ every time: stubs are
# never committed, so none can be stale.
stubs=$(git -C "$ROOT" ls-files -- clients/python/gen clients/typescript/src/gen clients/typescript/dist clients/go/gen clients/go/vendor 2>/dev/null)
[ -z "$stubs" ] && ok "no generated client stubs are committed (they are generated from proto/ below)" \
  || fail "generated stubs are committed, and will go stale: $(echo $stubs)"

# client LANG: runs that client's phases (generate, build, run) one after
# another, timing each; the example's own step log is shown under its line.
client() {
  local lang=$1 log=$WORK/$1.out times= label cmd t0
  : >"$log"
  shift
  while [ $# -gt 0 ]; do
    label=$1 cmd=$2
    shift 2
    t0=$(date +%s%N)
    if ! (cd "$ROOT/clients/$lang" && eval "$cmd") >>"$log" 2>&1; then
      fail "$lang client: $label failed: $(tail -25 "$log")"
      return
    fi
    times="$times, $label $(( ($(date +%s%N) - t0) / 1000000 ))ms"
  done
  ok "$lang client walks the credit flow and resumes a watch (${times#, })"
  grep -E '^(ok |credit flow)' "$log" | sed 's/^/         /'
}

if ! "$PYTHON" -c "import grpc, grpc_tools" 2>/dev/null; then
  fail "python client: $PYTHON lacks grpcio/grpcio-tools (scripts/lib.sh ensure_python_client)"
else
  client python \
    generate '"$PYTHON" generate.py' \
    run 'PYTHONPATH=gen timeout 60 "$PYTHON" credit_example.py --addr "$ADDR"' \
    pledge 'PYTHONPATH=gen timeout 60 "$PYTHON" pledge_example.py --addr "$ADDR"'
fi

if [ ! -x "$ROOT/clients/typescript/node_modules/.bin/tsc" ]; then
  fail "typescript client: clients/typescript/node_modules missing (scripts/lib.sh ensure_ts_client)"
else
  client typescript \
    generate 'npm run --silent generate' \
    build 'npm run --silent build --ignore-scripts' \
    run 'timeout 60 node dist/credit_example.js --addr "$ADDR"'
fi

if ! command -v go >/dev/null || ! command -v protoc-gen-go-grpc >/dev/null; then
  fail "go client: go or protoc-gen-go-grpc missing (scripts/lib.sh ensure_go_client)"
else
  # -trimpath: no checkout path in the build, so Go's build cache is shared
  # by every checkout (CI's fresh clone too): 2.5-4 s instead of 18-34 s.
  client go \
    generate './generate.sh' \
    vendor './vendor-debian.sh' \
    build 'GOFLAGS=-mod=vendor GOPROXY=off go build -trimpath -o "$WORK/credit-example-go" ./cmd/credit-example' \
    run 'timeout 60 "$WORK/credit-example-go" --addr "$ADDR"'
fi

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
# ACLs are on: a live server answers NOAUTH.
for port in $M_PORT $R_PORT; do redis-cli -p "$port" ping 2>&1 | grep -qE 'PONG|NOAUTH' && left="$left :$port"; done
kill -0 "$R_PID" 2>/dev/null && left="$left pid $R_PID"
[ -z "$left" ] && ok "no redis-server left behind" || fail "redis-server left behind:$left"

# No Redis password dev made reached its log (redis-cli URLs above carry the
# admin one: they are on stdout and in dev.json, never in a log line).
leaked=
count=0
while read -r secret; do
  [ -z "$secret" ] && continue
  count=$((count + 1))
  grep -qF -- "$secret" "$WORK/dev.err" && leaked="$leaked ${secret:0:6}..."
done < <(python3 -c "import sys, tomllib; [print(v) for v in tomllib.load(open(sys.argv[1], 'rb')).values()]" "$WORK/data/passwords.toml")
[ "$count" = 5 ] && [ -z "$leaked" ] && ok "none of the 5 Redis passwords in dev's log ($(wc -l <"$WORK/dev.err") lines)" \
  || fail "Redis passwords in dev's log:${leaked:- none} (of $count)"

# The same link with auth and TLS on, through the real grpcurl: its own
# data dir and ports (tests/e2e/smoke_auth.sh).
echo "openoes dev --auth:"
if bash "$ROOT/tests/e2e/smoke_auth.sh" "$OPENOES" | sed 's/^/  /'; then
  ok "openoes dev --auth: TLS, a token per role, the credit flow, refusals, no secret logged"
else
  fail "openoes dev --auth (tests/e2e/smoke_auth.sh, above)"
fi

echo "smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
