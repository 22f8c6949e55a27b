"""The credit flow through generated stubs: the same steps as the README's
grpcurl walk-through, with both sides in one script.

    python generate.py
    PYTHONPATH=gen python credit_example.py --addr 127.0.0.1:50051

1. exchange side: subscribe to credit requests (a thread);
2. WSP side: RequestCredit for a fresh request id, waiting up to 10 s;
3. the exchange accepts the delivery with RespondToCreditRequest;
4. the WSP call returns ACCEPTED; read the Credit Inventory;
5. WatchCreditEvents from the start shows the request and its acceptance.

Exits non-zero with a message if any step does not do what it should.
Needs a gateway serving both roles (`openoes dev` does).
"""

import argparse
import sys
import threading
import uuid

import grpc
from google.protobuf import duration_pb2

from openoes.credit.v1 import credit_pb2 as pb
from openoes.credit.v1 import credit_pb2_grpc as rpc


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def exchange(stub: rpc.CreditServiceStub, request_id: str, answered: threading.Event) -> None:
    """Accepts our request when it is delivered; stops after answering."""
    stream = stub.SubscribeCreditRequests(pb.SubscribeCreditRequestsRequest(consumer="python-example"))
    try:
        for delivery in stream:
            request = delivery.credit_request
            print(f"exchange: delivered {request.request_id} ({request.change} {request.asset} for {request.user_id})")
            # request_id is an idempotency key: answer every delivery, ours or not.
            stub.RespondToCreditRequest(
                pb.RespondToCreditRequestRequest(
                    request_id=request.request_id,
                    decision=pb.CREDIT_DECISION_ACCEPT,
                )
            )
            if request.request_id == request_id:
                answered.set()
                stream.cancel()
                return
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            print(f"exchange: subscription ended: {e.code()} {e.details()}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--user", default="python-user")
    args = parser.parse_args()

    channel = grpc.insecure_channel(args.addr)
    stub = rpc.CreditServiceStub(channel)
    request_id = f"py-{uuid.uuid4()}"

    answered = threading.Event()
    subscriber = threading.Thread(target=exchange, args=(stub, request_id, answered), daemon=True)
    subscriber.start()

    before = "0"
    try:
        before = stub.GetCreditInventory(pb.GetCreditInventoryRequest(user_id=args.user, asset="BTC")).credit_inventory.amount
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            fail(f"GetCreditInventory: {e.code()} {e.details()}")

    response = stub.RequestCredit(
        pb.RequestCreditRequest(
            user_id=args.user,
            asset="BTC",
            change="+0.25",
            chain="bitcoin",
            address="bc1qpythonexample",
            request_id=request_id,
            wait=duration_pb2.Duration(seconds=10),
        ),
        timeout=15,
    )
    record = response.credit_request
    print(f"wsp: {record.request_id} is {pb.CreditRequestStatus.Name(record.status)}, expected CI {record.expected_ci}")
    if record.status != pb.CREDIT_REQUEST_STATUS_ACCEPTED:
        fail("the request was not accepted within its wait")
    if not answered.wait(5):
        fail("the exchange thread never answered")

    ci = stub.GetCreditInventory(pb.GetCreditInventoryRequest(user_id=args.user, asset="BTC")).credit_inventory
    print(f"wsp: Credit Inventory of {args.user} in BTC is {ci.amount} (version {ci.version}), was {before}")
    if ci.amount != record.expected_ci:
        fail(f"CI {ci.amount} is not the expected {record.expected_ci}")

    seen = []
    events = stub.WatchCreditEvents(pb.WatchCreditEventsRequest(user_id=args.user, start_after_event_id="0-0"), timeout=10)
    try:
        for item in events:
            if item.event.request_id == request_id:
                seen.append(pb.CreditEventType.Name(item.event.type))
                if len(seen) == 2:
                    events.cancel()
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            fail(f"WatchCreditEvents: {e.code()} {e.details()}")
    print(f"events of {request_id}: {', '.join(seen)}")
    if seen != ["CREDIT_EVENT_TYPE_REQUESTED", "CREDIT_EVENT_TYPE_ACCEPTED"]:
        fail(f"unexpected events {seen}")
    print("ok")


if __name__ == "__main__":
    main()
