// Command credit-example walks the OpenOES credit flow through generated Go
// stubs, playing both sides against one gateway (`openoes dev` serves both
// roles): the same steps as the README's grpcurl walk-through and the
// Python and TypeScript examples.
//
//	./generate.sh && ./vendor-debian.sh   # stubs into gen/, Debian's packages into vendor/
//	go run ./cmd/credit-example --addr 127.0.0.1:50051
//
// Steps:
//
//  1. exchange: SubscribeCreditRequests; a goroutine accepts every delivery
//  2. WSP: GetCreditInventory of a fresh user is NOT_FOUND
//  3. WSP: RequestCredit +0.25 BTC with wait 10s returns ACCEPTED
//  4. exchange: the goroutine received that request and accepted it
//  5. WSP: GetCreditRequest shows it ACCEPTED
//  6. WSP: GetCreditInventory is 0.25
//  7. WatchCreditEvents from the start: REQUESTED and ACCEPTED of request 1;
//     remember the last event_id and disconnect
//  8. WSP: RequestCredit -0.1 while no watch is open: ACCEPTED, CI 0.15
//  9. WatchCreditEvents resumed with start_after_event_id: exactly
//     REQUESTED and ACCEPTED of request 2 (no gap, no duplicate)
//  10. exchange: unsubscribe; the subscription ended without error
//
// Every call has a deadline. Each run uses a fresh user and fresh request
// ids, so reruns against the same gateway work. Exits 1 naming the step that
// failed; prints one line per step on success.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	creditv1 "openoes.dev/clients/go/gen/openoes/credit/v1"
)

const (
	callTimeout  = 5 * time.Second  // every unary call
	creditWait   = 10 * time.Second // RequestCredit's wait for the exchange's decision
	watchTimeout = 10 * time.Second // each WatchCreditEvents stream
	subTimeout   = 60 * time.Second // the whole exchange subscription
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "gateway address (host:port)")
	flag.Parse()
	if err := run(*addr); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL %v\n", err)
		os.Exit(1)
	}
}

// steps numbers and times the steps; a failed step's error names it.
type steps struct {
	n     int
	start time.Time
}

func (s *steps) do(name string, fn func() (string, error)) error {
	s.n++
	t := time.Now()
	detail, err := fn()
	if err != nil {
		return fmt.Errorf("step %d (%s): %w", s.n, name, err)
	}
	fmt.Printf("ok   %2d %-50s %5dms  %s\n", s.n, name, time.Since(t).Milliseconds(), detail)
	return nil
}

func run(addr string) error {
	runID := "go-" + randomHex(6)
	user := runID
	r1, r2 := runID+"-1", runID+"-2"
	fmt.Printf("credit flow against %s, user %s\n", addr, user)

	// Non-blocking dial: an unreachable gateway shows as UNAVAILABLE on the
	// first call, which then names its step.
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	client := creditv1.NewCreditServiceClient(conn)
	s := &steps{start: time.Now()}

	var ex *exchange
	if err := s.do("exchange: SubscribeCreditRequests", func() (string, error) {
		var err error
		ex, err = subscribe(client, runID+"-exchange")
		if err != nil {
			return "", err
		}
		return "subscribed as consumer " + runID + "-exchange", nil
	}); err != nil {
		return err
	}
	defer ex.stop()

	if err := s.do("WSP: GetCreditInventory of a new user", func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		_, err := client.GetCreditInventory(ctx, &creditv1.GetCreditInventoryRequest{UserId: user, Asset: "BTC"})
		if status.Code(err) != codes.NotFound {
			return "", fmt.Errorf("want NOT_FOUND, got %v", err)
		}
		return "NOT_FOUND, as it should be", nil
	}); err != nil {
		return err
	}

	if err := s.do("WSP: RequestCredit +0.25 BTC, wait 10s", func() (string, error) {
		return requestCredit(client, ex, &creditv1.RequestCreditRequest{
			UserId: user, Asset: "BTC", Change: "+0.25", Chain: "bitcoin", Address: "bc1qgoexample",
			RequestId: r1,
		}, "0.25")
	}); err != nil {
		return err
	}

	if err := s.do("exchange: received and accepted request 1", func() (string, error) {
		return ex.waitAnswered(r1, callTimeout)
	}); err != nil {
		return err
	}

	if err := s.do("WSP: GetCreditRequest", func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		res, err := client.GetCreditRequest(ctx, &creditv1.GetCreditRequestRequest{RequestId: r1})
		if err != nil {
			return "", err
		}
		rec := res.GetCreditRequest()
		if rec.GetStatus() != creditv1.CreditRequestStatus_CREDIT_REQUEST_STATUS_ACCEPTED || rec.GetDecidedAt() == nil {
			return "", fmt.Errorf("want ACCEPTED with decided_at, got %v (decided_at %v)", rec.GetStatus(), rec.GetDecidedAt())
		}
		return fmt.Sprintf("%s is %s, decided at %s", r1, statusName(rec.GetStatus()), rec.GetDecidedAt().AsTime().Format(time.RFC3339Nano)), nil
	}); err != nil {
		return err
	}

	if err := s.do("WSP: GetCreditInventory", func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		res, err := client.GetCreditInventory(ctx, &creditv1.GetCreditInventoryRequest{UserId: user, Asset: "BTC"})
		if err != nil {
			return "", err
		}
		ci := res.GetCreditInventory()
		if ci.GetAmount() != "0.25" || ci.GetLastRequestId() != r1 {
			return "", fmt.Errorf("want 0.25 BTC last changed by %s, got %s by %s", r1, ci.GetAmount(), ci.GetLastRequestId())
		}
		return fmt.Sprintf("%s BTC (version %d, last request %s)", ci.GetAmount(), ci.GetVersion(), ci.GetLastRequestId()), nil
	}); err != nil {
		return err
	}

	var cursor string
	var firstWatch []*creditv1.CreditEvent
	if err := s.do("watch: WatchCreditEvents from the start", func() (string, error) {
		var err error
		firstWatch, err = watch(client, user, "0-0", 2)
		if err != nil {
			return "", err
		}
		if err := expectEvents(firstWatch, r1, "0-0"); err != nil {
			return "", err
		}
		cursor = firstWatch[len(firstWatch)-1].GetEventId()
		return fmt.Sprintf("%s; disconnected at event_id %s", describe(firstWatch), cursor), nil
	}); err != nil {
		return err
	}

	if err := s.do("WSP: RequestCredit -0.1 BTC while nobody watches", func() (string, error) {
		return requestCredit(client, ex, &creditv1.RequestCreditRequest{
			UserId: user, Asset: "BTC", Change: "-0.1", RequestId: r2,
		}, "0.15")
	}); err != nil {
		return err
	}

	if err := s.do("watch: resume with start_after_event_id", func() (string, error) {
		resumed, err := watch(client, user, cursor, 2)
		if err != nil {
			return "", err
		}
		if err := expectEvents(resumed, r2, cursor); err != nil {
			return "", err
		}
		for _, old := range firstWatch {
			for _, e := range resumed {
				if e.GetEventId() == old.GetEventId() {
					return "", fmt.Errorf("event %s delivered again after the resume", e.GetEventId())
				}
			}
		}
		return describe(resumed) + "; no gap, no duplicate", nil
	}); err != nil {
		return err
	}

	if err := s.do("exchange: unsubscribe", func() (string, error) {
		if err := ex.stop(); err != nil {
			return "", err
		}
		return fmt.Sprintf("answered %d deliveries", ex.count), nil
	}); err != nil {
		return err
	}

	fmt.Printf("credit flow ok: %d steps in %dms\n", s.n, time.Since(s.start).Milliseconds())
	return nil
}

// requestCredit sends req with a wait and checks it comes back ACCEPTED with
// the expected CI.
func requestCredit(client creditv1.CreditServiceClient, ex *exchange, req *creditv1.RequestCreditRequest, wantCI string) (string, error) {
	req.Wait = durationpb.New(creditWait)
	ctx, cancel := context.WithTimeout(context.Background(), creditWait+callTimeout)
	defer cancel()
	res, err := client.RequestCredit(ctx, req)
	if err != nil {
		return "", err
	}
	rec := res.GetCreditRequest()
	if rec.GetStatus() != creditv1.CreditRequestStatus_CREDIT_REQUEST_STATUS_ACCEPTED {
		msg := fmt.Sprintf("want ACCEPTED within the wait, got %s", statusName(rec.GetStatus()))
		if err := ex.failure(); err != nil {
			msg += "; the exchange's subscription failed: " + err.Error()
		} else if rec.GetStatus() == creditv1.CreditRequestStatus_CREDIT_REQUEST_STATUS_PENDING {
			msg += " (not answered: does another subscriber of the group hold it?)"
		}
		return "", errors.New(msg)
	}
	if rec.GetExpectedCi() != wantCI {
		return "", fmt.Errorf("want expected CI %s, got %s", wantCI, rec.GetExpectedCi())
	}
	return fmt.Sprintf("%s is %s, expected CI %s", rec.GetRequestId(), statusName(rec.GetStatus()), rec.GetExpectedCi()), nil
}

// exchange is the exchange side: a subscription whose goroutine accepts every
// delivery. request_id is an idempotency key, so answering a request that is
// not ours (left over from another run) is harmless.
type exchange struct {
	cancel   context.CancelFunc
	answered chan string // request ids, in the order they were accepted
	done     chan error  // the goroutine's end: nil when we cancelled it
	err      error
	ended    bool
	count    int
}

func subscribe(client creditv1.CreditServiceClient, consumer string) (*exchange, error) {
	ctx, cancel := context.WithTimeout(context.Background(), subTimeout)
	// The server sends its headers once the subscription is set up. Wait for
	// them no longer than for a unary call, not for the stream's deadline.
	type opened struct {
		stream creditv1.CreditService_SubscribeCreditRequestsClient
		err    error
	}
	ready := make(chan opened, 1)
	go func() {
		stream, err := client.SubscribeCreditRequests(ctx, &creditv1.SubscribeCreditRequestsRequest{Consumer: consumer})
		if err == nil {
			_, err = stream.Header()
		}
		ready <- opened{stream, err}
	}()
	var stream creditv1.CreditService_SubscribeCreditRequestsClient
	select {
	case o := <-ready:
		if o.err != nil {
			cancel()
			return nil, o.err
		}
		stream = o.stream
	case <-time.After(callTimeout):
		cancel()
		return nil, fmt.Errorf("no response headers within %v", callTimeout)
	}
	ex := &exchange{cancel: cancel, answered: make(chan string, 64), done: make(chan error, 1)}
	go func() {
		for {
			d, err := stream.Recv()
			if err != nil {
				if ctx.Err() == context.Canceled {
					err = nil
				}
				ex.done <- err
				return
			}
			req := d.GetCreditRequest()
			actx, acancel := context.WithTimeout(ctx, callTimeout)
			_, err = client.RespondToCreditRequest(actx, &creditv1.RespondToCreditRequestRequest{
				RequestId: req.GetRequestId(),
				Decision:  creditv1.CreditDecision_CREDIT_DECISION_ACCEPT,
			})
			acancel()
			if err != nil {
				ex.done <- fmt.Errorf("RespondToCreditRequest %s: %w", req.GetRequestId(), err)
				return
			}
			select {
			case ex.answered <- req.GetRequestId():
			default: // nobody waits for this many; fine
			}
		}
	}()
	return ex, nil
}

// waitAnswered waits until the goroutine has accepted id.
func (ex *exchange) waitAnswered(id string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	var others []string
	for {
		select {
		case got := <-ex.answered:
			ex.count++
			if got == id {
				detail := "accepted " + id
				if len(others) > 0 {
					detail += fmt.Sprintf(" (and %d left over from earlier runs)", len(others))
				}
				return detail, nil
			}
			others = append(others, got)
		case err := <-ex.done:
			ex.ended, ex.err = true, err
			return "", fmt.Errorf("subscription ended before %s was delivered: %v", id, err)
		case <-deadline:
			return "", fmt.Errorf("%s not delivered within %v", id, timeout)
		}
	}
}

// failure reports the goroutine's error if it has ended, without waiting.
func (ex *exchange) failure() error {
	if !ex.ended {
		select {
		case err := <-ex.done:
			ex.ended, ex.err = true, err
		default:
		}
	}
	return ex.err
}

// stop cancels the subscription and returns the goroutine's error, if any.
func (ex *exchange) stop() error {
	ex.cancel()
	if !ex.ended {
		select {
		case err := <-ex.done:
			ex.ended, ex.err = true, err
		case <-time.After(callTimeout):
			return errors.New("the subscription goroutine did not end after cancel")
		}
	}
	for len(ex.answered) > 0 {
		<-ex.answered
		ex.count++
	}
	return ex.err
}

// watch opens WatchCreditEvents for user after the cursor, takes n events
// and disconnects (cancels the stream).
func watch(client creditv1.CreditServiceClient, user, after string, n int) ([]*creditv1.CreditEvent, error) {
	ctx, cancel := context.WithTimeout(context.Background(), watchTimeout)
	defer cancel()
	stream, err := client.WatchCreditEvents(ctx, &creditv1.WatchCreditEventsRequest{UserId: user, StartAfterEventId: after})
	if err != nil {
		return nil, err
	}
	var events []*creditv1.CreditEvent
	for len(events) < n {
		res, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("after %d of %d events (%s): %w", len(events), n, describe(events), err)
		}
		events = append(events, res.GetEvent())
	}
	return events, nil
}

// expectEvents checks events are exactly REQUESTED then ACCEPTED of
// requestID, with event ids increasing past the cursor.
func expectEvents(events []*creditv1.CreditEvent, requestID, after string) error {
	want := []creditv1.CreditEventType{
		creditv1.CreditEventType_CREDIT_EVENT_TYPE_REQUESTED,
		creditv1.CreditEventType_CREDIT_EVENT_TYPE_ACCEPTED,
	}
	if len(events) != len(want) {
		return fmt.Errorf("want %d events, got %s", len(want), describe(events))
	}
	prev := after
	for i, e := range events {
		if e.GetType() != want[i] || e.GetRequestId() != requestID {
			return fmt.Errorf("want %v and %v of %s in that order, got %s", want[0], want[1], requestID, describe(events))
		}
		if !idAfter(e.GetEventId(), prev) {
			return fmt.Errorf("event_id %s does not come after %s", e.GetEventId(), prev)
		}
		prev = e.GetEventId()
	}
	return nil
}

// idAfter compares event ids, Redis stream ids "ms-seq" (otherwise opaque
// to clients: this check is the example's, not an API guarantee).
func idAfter(a, b string) bool {
	pa, pb := strings.SplitN(a, "-", 2), strings.SplitN(b, "-", 2)
	if len(pa) != 2 || len(pb) != 2 {
		return false
	}
	ams, _ := strconv.ParseUint(pa[0], 10, 64)
	bms, _ := strconv.ParseUint(pb[0], 10, 64)
	aseq, _ := strconv.ParseUint(pa[1], 10, 64)
	bseq, _ := strconv.ParseUint(pb[1], 10, 64)
	return ams > bms || (ams == bms && aseq > bseq)
}

func describe(events []*creditv1.CreditEvent) string {
	parts := make([]string, 0, len(events))
	for _, e := range events {
		parts = append(parts, fmt.Sprintf("%s %s %s", e.GetEventId(),
			strings.TrimPrefix(e.GetType().String(), "CREDIT_EVENT_TYPE_"), e.GetRequestId()))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func statusName(s creditv1.CreditRequestStatus) string {
	return strings.TrimPrefix(s.String(), "CREDIT_REQUEST_STATUS_")
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
