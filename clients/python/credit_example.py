"""The OpenOES credit flow through generated stubs, playing both sides
against one gateway (`openoes dev` serves both roles): the same steps as the
README's grpcurl walk-through and the Go and TypeScript examples.

    python generate.py
    PYTHONPATH=gen python credit_example.py --addr 127.0.0.1:50051

Steps:
 1. exchange: SubscribeCreditRequests; a thread accepts every delivery
 2. WSP: GetCreditInventory of a fresh user is NOT_FOUND
 3. WSP: RequestCredit +0.25 BTC with wait 10s returns ACCEPTED
 4. exchange: the thread received that request and accepted it
 5. WSP: GetCreditRequest shows it ACCEPTED
 6. WSP: GetCreditInventory is 0.25
 7. WatchCreditEvents from the start: REQUESTED and ACCEPTED of request 1;
    remember the last event_id and disconnect
 8. WSP: RequestCredit -0.1 while no watch is open: ACCEPTED, CI 0.15
 9. WatchCreditEvents resumed with start_after_event_id: exactly
    REQUESTED and ACCEPTED of request 2 (no gap, no duplicate)
10. exchange: unsubscribe; the subscription ended without error

Every call has a deadline. Each run uses a fresh user and fresh request ids,
so reruns against the same gateway work. Exits 1 naming the step that
failed; prints one line per step on success.
"""

import argparse
import secrets
import sys
import threading
import time

import grpc
from google.protobuf import duration_pb2

from openoes.credit.v1 import credit_pb2 as pb
from openoes.credit.v1 import credit_pb2_grpc as rpc

CALL_TIMEOUT = 5.0  # every unary call, seconds
CREDIT_WAIT = 10  # RequestCredit's wait for the exchange's decision
WATCH_TIMEOUT = 10.0  # each WatchCreditEvents stream
SUB_TIMEOUT = 60.0  # the whole exchange subscription


class StepFailed(Exception):
    pass


class Steps:
    """Numbers and times the steps; a failed step's error names it."""

    def __init__(self) -> None:
        self.n = 0
        self.start = time.monotonic()

    def do(self, name, fn):
        self.n += 1
        t = time.monotonic()
        try:
            detail = fn()
        except grpc.RpcError as e:
            raise StepFailed(f"step {self.n} ({name}): {e.code().name}: {e.details()}") from None
        except StepFailed as e:
            raise StepFailed(f"step {self.n} ({name}): {e}") from None
        except Exception as e:  # noqa: BLE001 - any failure names its step
            raise StepFailed(f"step {self.n} ({name}): {type(e).__name__}: {e}") from None
        ms = round((time.monotonic() - t) * 1000)
        print(f"ok   {self.n:2} {name:<50} {ms:5}ms  {detail}", flush=True)


class Exchange:
    """The exchange side: a subscription whose thread accepts every delivery.

    request_id is an idempotency key, so answering a request that is not ours
    (left over from another run) is harmless.
    """

    def __init__(self, stub: rpc.CreditServiceStub, consumer: str) -> None:
        self.stub = stub
        self.answered = set()
        self.error = None
        self.stopping = False
        self.changed = threading.Condition()
        self.stream = stub.SubscribeCreditRequests(
            pb.SubscribeCreditRequestsRequest(consumer=consumer), timeout=SUB_TIMEOUT
        )
        self.thread = threading.Thread(target=self._run, daemon=True)

    def ready(self) -> None:
        """Waits for the server's headers: the subscription is set up. Waits
        no longer than for a unary call, not for the stream's deadline."""
        headers = threading.Event()

        def wait_for_headers():
            self.stream.initial_metadata()  # returns on headers, or when the call ends
            headers.set()

        threading.Thread(target=wait_for_headers, daemon=True).start()
        if not headers.wait(CALL_TIMEOUT):
            self.stream.cancel()
            raise StepFailed(f"no response headers within {CALL_TIMEOUT}s")
        if self.stream.done():  # ended instead: UNAVAILABLE, PERMISSION_DENIED, ...
            raise StepFailed(f"{self.stream.code().name}: {self.stream.details()}")
        self.thread.start()

    def _run(self) -> None:
        try:
            for delivery in self.stream:
                request = delivery.credit_request
                self.stub.RespondToCreditRequest(
                    pb.RespondToCreditRequestRequest(
                        request_id=request.request_id, decision=pb.CREDIT_DECISION_ACCEPT
                    ),
                    timeout=CALL_TIMEOUT,
                )
                with self.changed:
                    self.answered.add(request.request_id)
                    self.changed.notify_all()
            error = None if self.stopping else "the subscription ended by itself"
        except grpc.RpcError as e:
            cancelled = self.stopping and e.code() == grpc.StatusCode.CANCELLED
            error = None if cancelled else f"{e.code().name}: {e.details()}"
        with self.changed:
            self.error = error
            self.changed.notify_all()

    def wait_answered(self, request_id: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: request_id in self.answered, timeout)

    def stop(self):
        """Cancels the subscription; returns the thread's error, if any."""
        self.stopping = True
        self.stream.cancel()
        if self.thread.is_alive():
            self.thread.join(CALL_TIMEOUT)
            if self.thread.is_alive():
                return "the subscription thread did not end after cancel"
        return self.error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    args = parser.parse_args()
    with grpc.insecure_channel(args.addr) as channel:
        try:
            flow(rpc.CreditServiceStub(channel), args.addr)
        except StepFailed as e:
            print(f"FAIL {e}", file=sys.stderr)
            return 1
    return 0


def flow(stub: rpc.CreditServiceStub, addr: str) -> None:
    run = f"py-{secrets.token_hex(6)}"
    user = run
    r1, r2 = f"{run}-1", f"{run}-2"
    print(f"credit flow against {addr}, user {user}", flush=True)
    steps = Steps()

    exchange = Exchange(stub, f"{run}-exchange")
    try:

        def subscribe():
            exchange.ready()
            return f"subscribed as consumer {run}-exchange"

        steps.do("exchange: SubscribeCreditRequests", subscribe)

        def inventory_before():
            try:
                ci = stub.GetCreditInventory(
                    pb.GetCreditInventoryRequest(user_id=user, asset="BTC"), timeout=CALL_TIMEOUT
                ).credit_inventory
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return "NOT_FOUND, as it should be"
                raise
            raise StepFailed(f"want NOT_FOUND, got {ci.amount} BTC")

        steps.do("WSP: GetCreditInventory of a new user", inventory_before)

        steps.do(
            "WSP: RequestCredit +0.25 BTC, wait 10s",
            lambda: request_credit(
                stub,
                exchange,
                pb.RequestCreditRequest(
                    user_id=user,
                    asset="BTC",
                    change="+0.25",
                    chain="bitcoin",
                    address="bc1qpythonexample",
                    request_id=r1,
                ),
                "0.25",
            ),
        )

        def answered():
            if not exchange.wait_answered(r1, CALL_TIMEOUT):
                why = f": {exchange.error}" if exchange.error else ""
                raise StepFailed(f"{r1} not accepted within {CALL_TIMEOUT}s{why}")
            others = len(exchange.answered) - 1
            return f"accepted {r1}" + (f" (and {others} left over from earlier runs)" if others else "")

        steps.do("exchange: received and accepted request 1", answered)

        def get_request():
            rec = stub.GetCreditRequest(pb.GetCreditRequestRequest(request_id=r1), timeout=CALL_TIMEOUT).credit_request
            if rec.status != pb.CREDIT_REQUEST_STATUS_ACCEPTED or not rec.HasField("decided_at"):
                raise StepFailed(f"want ACCEPTED with decided_at, got {status_name(rec.status)}")
            decided = rec.decided_at.ToDatetime().isoformat(timespec="milliseconds")
            return f"{r1} is {status_name(rec.status)}, decided at {decided}Z"

        steps.do("WSP: GetCreditRequest", get_request)

        def get_inventory():
            ci = stub.GetCreditInventory(
                pb.GetCreditInventoryRequest(user_id=user, asset="BTC"), timeout=CALL_TIMEOUT
            ).credit_inventory
            if ci.amount != "0.25" or ci.last_request_id != r1:
                raise StepFailed(f"want 0.25 BTC last changed by {r1}, got {ci.amount} by {ci.last_request_id}")
            return f"{ci.amount} BTC (version {ci.version}, last request {ci.last_request_id})"

        steps.do("WSP: GetCreditInventory", get_inventory)

        first_watch = []

        def watch_from_start():
            first_watch.extend(watch(stub, user, "0-0", 2))
            expect_events(first_watch, r1, "0-0")
            return f"{describe(first_watch)}; disconnected at event_id {first_watch[-1].event_id}"

        steps.do("watch: WatchCreditEvents from the start", watch_from_start)
        cursor = first_watch[-1].event_id

        steps.do(
            "WSP: RequestCredit -0.1 BTC while nobody watches",
            lambda: request_credit(
                stub,
                exchange,
                pb.RequestCreditRequest(user_id=user, asset="BTC", change="-0.1", request_id=r2),
                "0.15",
            ),
        )

        def resume():
            resumed = watch(stub, user, cursor, 2)
            expect_events(resumed, r2, cursor)
            seen = {e.event_id for e in first_watch}
            for e in resumed:
                if e.event_id in seen:
                    raise StepFailed(f"event {e.event_id} delivered again after the resume")
            return f"{describe(resumed)}; no gap, no duplicate"

        steps.do("watch: resume with start_after_event_id", resume)

        def unsubscribe():
            error = exchange.stop()
            if error:
                raise StepFailed(error)
            return f"answered {len(exchange.answered)} deliveries"

        steps.do("exchange: unsubscribe", unsubscribe)
    finally:
        exchange.stop()
    print(f"credit flow ok: {steps.n} steps in {round((time.monotonic() - steps.start) * 1000)}ms")


def request_credit(stub, exchange: Exchange, request: pb.RequestCreditRequest, want_ci: str) -> str:
    """Sends request with a wait; it must come back ACCEPTED with the expected CI."""
    request.wait.CopyFrom(duration_pb2.Duration(seconds=CREDIT_WAIT))
    rec = stub.RequestCredit(request, timeout=CREDIT_WAIT + CALL_TIMEOUT).credit_request
    if rec.status != pb.CREDIT_REQUEST_STATUS_ACCEPTED:
        if exchange.error:
            why = f"; the exchange's subscription failed: {exchange.error}"
        elif rec.status == pb.CREDIT_REQUEST_STATUS_PENDING:
            why = " (not answered: does another subscriber of the group hold it?)"
        else:
            why = ""
        raise StepFailed(f"want ACCEPTED within the wait, got {status_name(rec.status)}{why}")
    if rec.expected_ci != want_ci:
        raise StepFailed(f"want expected CI {want_ci}, got {rec.expected_ci}")
    return f"{rec.request_id} is {status_name(rec.status)}, expected CI {rec.expected_ci}"


def watch(stub, user: str, after: str, n: int) -> list:
    """Watches user's events after the cursor, takes n and disconnects."""
    events = []
    stream = stub.WatchCreditEvents(
        pb.WatchCreditEventsRequest(user_id=user, start_after_event_id=after), timeout=WATCH_TIMEOUT
    )
    try:
        for item in stream:
            events.append(item.event)
            if len(events) == n:
                break
    except grpc.RpcError as e:
        raise StepFailed(f"after {len(events)} of {n} events ({describe(events)}): {e.code().name}: {e.details()}")
    finally:
        stream.cancel()  # disconnect
    if len(events) < n:
        raise StepFailed(f"the stream ended after {len(events)} of {n} events ({describe(events)})")
    return events


def expect_events(events: list, request_id: str, after: str) -> None:
    """Exactly REQUESTED then ACCEPTED of request_id, ids increasing past the cursor."""
    want = [pb.CREDIT_EVENT_TYPE_REQUESTED, pb.CREDIT_EVENT_TYPE_ACCEPTED]
    if [(e.type, e.request_id) for e in events] != [(t, request_id) for t in want]:
        raise StepFailed(f"want REQUESTED and ACCEPTED of {request_id} in that order, got {describe(events)}")
    prev = after
    for e in events:
        if not id_after(e.event_id, prev):
            raise StepFailed(f"event_id {e.event_id} does not come after {prev}")
        prev = e.event_id


def id_after(a: str, b: str) -> bool:
    """Compares event ids, Redis stream ids "ms-seq" (otherwise opaque to
    clients: this check is the example's, not an API guarantee)."""
    return tuple(map(int, a.split("-"))) > tuple(map(int, b.split("-")))


def status_name(status: int) -> str:
    return pb.CreditRequestStatus.Name(status).removeprefix("CREDIT_REQUEST_STATUS_")


def describe(events: list) -> str:
    if not events:
        return "none"
    return ", ".join(
        f"{e.event_id} {pb.CreditEventType.Name(e.type).removeprefix('CREDIT_EVENT_TYPE_')} {e.request_id}"
        for e in events
    )


if __name__ == "__main__":
    sys.exit(main())
