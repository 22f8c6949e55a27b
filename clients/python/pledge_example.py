"""The OpenOES pledge flow through generated stubs, playing both sides
against one gateway (`openoes dev` serves both roles): the same steps as the
README's grpcurl pledge walk-through.

    python generate.py
    PYTHONPATH=gen python pledge_example.py --addr 127.0.0.1:50051

Steps:
 1. exchange: SubscribeCreditRequests; a thread accepts every delivery
 2. WSP: RecordDeposit of 10 BTC into a fresh user's vault
 3. WSP: CreatePledge 4 BTC with wait 10s: ACTIVE (the exchange accepted
    the credit increase it sent)
 4. WSP: GetVaultBalance: total 10, locked 4, available 6; Credit
    Inventory 4
 5. WSP: ReleasePledge 1.5 BTC with wait 10s: COMPLETED, unlocking 1.5 from
    the pledge (which keeps 2.5)
 6. WSP: RecordWithdrawal of all that is available (7.5), then one unit
    more is refused (INSUFFICIENT_AVAILABLE_BALANCE)
 7. WatchPledgeEvents from the start for the user: the deposit, the
    pledge, the release and the withdrawal, in order
 8. exchange: unsubscribe

Every call has a deadline; each run uses a fresh user and fresh ids.
Exits 1 naming the step that failed; prints one line per step on success.
"""

import argparse
import secrets
import sys

import grpc
from google.protobuf import duration_pb2

from credit_example import CALL_TIMEOUT, WATCH_TIMEOUT, Exchange, StepFailed, Steps
from openoes.credit.v1 import credit_pb2 as cpb
from openoes.credit.v1 import credit_pb2_grpc as crpc
from openoes.pledge.v1 import pledge_pb2 as pb
from openoes.pledge.v1 import pledge_pb2_grpc as rpc

WAIT = duration_pb2.Duration(seconds=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    args = parser.parse_args()
    with grpc.insecure_channel(args.addr) as channel:
        try:
            flow(rpc.PledgeServiceStub(channel), crpc.CreditServiceStub(channel), args.addr)
        except StepFailed as e:
            print(f"FAIL {e}", file=sys.stderr)
            return 1
    return 0


def expect(what: str, got, want) -> None:
    if got != want:
        raise StepFailed(f"{what}: got {got!r}, want {want!r}")


def flow(stub: rpc.PledgeServiceStub, credit: crpc.CreditServiceStub, addr: str) -> None:
    run = f"pp-{secrets.token_hex(6)}"
    user = run
    print(f"pledge flow against {addr}, user {user}", flush=True)
    steps = Steps()
    exchange = Exchange(credit, f"{run}-exchange")
    try:

        def subscribe():
            exchange.ready()
            return f"subscribed as consumer {run}-exchange"

        steps.do("exchange: SubscribeCreditRequests", subscribe)

        def deposit():
            b = stub.RecordDeposit(
                pb.RecordDepositRequest(
                    request_id=f"{run}-dep", user_id=user, asset="BTC", amount="10",
                    chain="bitcoin", address="bc1qcustody", tx_id="f00d",
                ),
                timeout=CALL_TIMEOUT,
            ).balance
            expect("available", b.available, "10")
            return "10 BTC available"

        steps.do("WSP: RecordDeposit 10 BTC", deposit)

        def pledge():
            p = stub.CreatePledge(
                pb.CreatePledgeRequest(
                    request_id=f"{run}-p1", user_id=user, asset="BTC", amount="4",
                    chain="bitcoin", address="bc1qcustody", wait=WAIT,
                ),
                timeout=CALL_TIMEOUT + 10,
            ).pledge
            expect("status", pb.PledgeStatus.Name(p.status), "PLEDGE_STATUS_ACTIVE")
            return f"{p.pledge_id} is ACTIVE, credit request {p.credit_request_id}"

        steps.do("WSP: CreatePledge 4 BTC, wait 10s", pledge)

        def balance():
            b = stub.GetVaultBalance(
                pb.GetVaultBalanceRequest(user_id=user, asset="BTC"), timeout=CALL_TIMEOUT
            ).balance
            expect("total/locked/available", (b.total, b.locked, b.available), ("10", "4", "6"))
            ci = credit.GetCreditInventory(
                cpb.GetCreditInventoryRequest(user_id=user, asset="BTC"), timeout=CALL_TIMEOUT
            ).credit_inventory.amount
            expect("credit inventory", ci, "4")
            return "total 10, locked 4, available 6; CI 4"

        steps.do("WSP: GetVaultBalance and GetCreditInventory", balance)

        def release():
            r = stub.ReleasePledge(
                pb.ReleasePledgeRequest(
                    request_id=f"{run}-r1", user_id=user, asset="BTC", amount="1.5", wait=WAIT
                ),
                timeout=CALL_TIMEOUT + 10,
            ).release
            expect("status", pb.ReleaseStatus.Name(r.status), "RELEASE_STATUS_COMPLETED")
            unlocks = [(u.pledge_id, u.amount) for u in r.unlocks]
            expect("unlocks", unlocks, [(f"{run}-p1", "1.5")])
            p = stub.GetPledge(pb.GetPledgeRequest(pledge_id=f"{run}-p1"), timeout=CALL_TIMEOUT).pledge
            expect("remaining", p.remaining, "2.5")
            return "COMPLETED; the pledge keeps 2.5"

        steps.do("WSP: ReleasePledge 1.5 BTC, wait 10s", release)

        def withdraw():
            stub.RecordWithdrawal(
                pb.RecordWithdrawalRequest(
                    request_id=f"{run}-w1", user_id=user, asset="BTC", amount="7.5",
                    chain="bitcoin", address="bc1qpayout",
                ),
                timeout=CALL_TIMEOUT,
            )
            try:
                stub.RecordWithdrawal(
                    pb.RecordWithdrawalRequest(
                        request_id=f"{run}-w2", user_id=user, asset="BTC",
                        amount="0.000000000000000001", chain="bitcoin", address="bc1qpayout",
                    ),
                    timeout=CALL_TIMEOUT,
                )
            except grpc.RpcError as e:
                expect("code", e.code(), grpc.StatusCode.FAILED_PRECONDITION)
                return "7.5 withdrawn; one unit more refused"
            raise StepFailed("a withdrawal beyond the available balance went through")

        steps.do("WSP: RecordWithdrawal of all that is available", withdraw)

        def events():
            stream = stub.WatchPledgeEvents(
                pb.WatchPledgeEventsRequest(user_id=user, start_after_event_id="0-0"),
                timeout=WATCH_TIMEOUT,
            )
            want = [
                "DEPOSIT_RECORDED", "PLEDGE_REQUESTED", "PLEDGE_ACTIVE",
                "RELEASE_REQUESTED", "RELEASE_COMPLETED", "WITHDRAWAL_RECORDED",
            ]
            got = []
            for message in stream:
                got.append(pb.PledgeEventType.Name(message.event.type).removeprefix("PLEDGE_EVENT_TYPE_"))
                if len(got) == len(want):
                    break
            stream.cancel()
            expect("events", got, want)
            return ", ".join(got)

        steps.do("WatchPledgeEvents from the start", events)
    finally:
        error = exchange.stop()

    def unsubscribe():
        if error:
            raise StepFailed(error)
        return "the subscription ended without error"

    steps.do("exchange: unsubscribe", unsubscribe)
    print(f"pledge flow ok: {steps.n} steps", flush=True)


if __name__ == "__main__":
    sys.exit(main())
