// The OpenOES credit flow through protoc-gen-es stubs and Connect's gRPC
// transport, playing both sides against one gateway (`openoes dev` serves
// both roles): the same steps as the README's grpcurl walk-through and the
// Go and Python examples.
//
//   npm ci && npm run build
//   node dist/credit_example.js --addr 127.0.0.1:50051
//
// Steps:
//  1. exchange: SubscribeCreditRequests; a task accepts every delivery
//  2. WSP: GetCreditInventory of a fresh user is NOT_FOUND
//  3. WSP: RequestCredit +0.25 BTC with wait 10s returns ACCEPTED
//  4. exchange: the task received that request and accepted it
//  5. WSP: GetCreditRequest shows it ACCEPTED
//  6. WSP: GetCreditInventory is 0.25
//  7. WatchCreditEvents from the start: REQUESTED and ACCEPTED of request 1;
//     remember the last event_id and disconnect
//  8. WSP: RequestCredit -0.1 while no watch is open: ACCEPTED, CI 0.15
//  9. WatchCreditEvents resumed with start_after_event_id: exactly
//     REQUESTED and ACCEPTED of request 2 (no gap, no duplicate)
// 10. exchange: unsubscribe; the subscription ended without error
//
// Every call has a deadline. Each run uses a fresh user and fresh request
// ids, so reruns against the same gateway work. Exits 1 naming the step that
// failed; prints one line per step on success.
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

import { connectCredit, type CreditClient } from "./client.js";
import {
  CreditDecision,
  CreditEventType,
  CreditRequestStatus,
  type CreditEvent,
} from "./gen/openoes/credit/v1/credit_pb.js";

const CALL_TIMEOUT_MS = 5_000; // every unary call
const CREDIT_WAIT_S = 10; // RequestCredit's wait for the exchange's decision
const WATCH_TIMEOUT_MS = 10_000; // each WatchCreditEvents stream
const SUB_TIMEOUT_MS = 60_000; // the whole exchange subscription

class StepError extends Error {}

/** Numbers and times the steps; a failed step's error names it. */
class Steps {
  n = 0;
  readonly start = performance.now();

  async do(name: string, fn: () => Promise<string>): Promise<void> {
    this.n++;
    const t = performance.now();
    let detail: string;
    try {
      detail = await fn();
    } catch (err) {
      throw new StepError(`step ${this.n} (${name}): ${message(err)}`);
    }
    const ms = Math.round(performance.now() - t);
    console.log(`ok   ${String(this.n).padStart(2)} ${name.padEnd(50)} ${String(ms).padStart(5)}ms  ${detail}`);
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Resolves (never rejects) once `id` is in the set, or after `ms`. */
class Answered {
  private readonly ids = new Set<string>();
  private readonly waiters = new Map<string, () => void>();

  add(id: string): void {
    this.ids.add(id);
    this.waiters.get(id)?.();
  }

  get size(): number {
    return this.ids.size;
  }

  wait(id: string, ms: number): Promise<boolean> {
    if (this.ids.has(id)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.waiters.set(id, () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

/**
 * The exchange side: a subscription whose task accepts every delivery.
 * request_id is an idempotency key, so answering a request that is not ours
 * (left over from another run) is harmless.
 */
class Exchange {
  readonly answered = new Answered();
  /** Resolves once the server has sent the stream's headers. */
  readonly subscribed: Promise<void>;
  /** Resolves when the task ends: undefined if we stopped it, else the error. */
  readonly ended: Promise<Error | undefined>;
  failure: Error | undefined;
  private readonly abort = new AbortController();

  constructor(client: CreditClient, consumer: string) {
    let onHeader!: () => void;
    this.subscribed = new Promise((resolve) => (onHeader = resolve));
    const stream = client.subscribeCreditRequests(
      { consumer },
      { signal: this.abort.signal, timeoutMs: SUB_TIMEOUT_MS, onHeader },
    );
    this.ended = (async (): Promise<Error | undefined> => {
      try {
        for await (const { creditRequest } of stream) {
          if (!creditRequest) continue;
          await client.respondToCreditRequest(
            { requestId: creditRequest.requestId, decision: CreditDecision.ACCEPT },
            { signal: this.abort.signal, timeoutMs: CALL_TIMEOUT_MS },
          );
          this.answered.add(creditRequest.requestId);
        }
        return this.abort.signal.aborted ? undefined : new Error("the subscription ended by itself");
      } catch (err) {
        if (this.abort.signal.aborted && ConnectError.from(err).code === Code.Canceled) return undefined;
        return err instanceof Error ? err : new Error(String(err));
      }
    })().then((err) => (this.failure = err));
  }

  /**
   * Waits for the headers, no longer than for a unary call (not for the
   * stream's deadline); fails with the task's error if it ends first.
   */
  async ready(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<Error>((resolve) => {
      timer = setTimeout(() => resolve(new Error(`no response headers within ${CALL_TIMEOUT_MS}ms`)), CALL_TIMEOUT_MS);
    });
    try {
      const err = await Promise.race([
        this.subscribed.then(() => undefined),
        this.ended.then((e) => e ?? new Error("the subscription ended")),
        timeout,
      ]);
      if (err) throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async stop(): Promise<Error | undefined> {
    this.abort.abort();
    return this.ended;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { addr: { type: "string", default: "127.0.0.1:50051" } } });
  const addr = values.addr!;
  const conn = connectCredit(addr, CALL_TIMEOUT_MS);
  try {
    await flow(conn.client, addr);
  } catch (err) {
    console.error(`FAIL ${message(err)}`);
    process.exitCode = 1;
  } finally {
    conn.close();
  }
}

async function flow(client: CreditClient, addr: string): Promise<void> {
  const run = `ts-${randomBytes(6).toString("hex")}`;
  const user = run;
  const [r1, r2] = [`${run}-1`, `${run}-2`];
  console.log(`credit flow against ${addr}, user ${user}`);
  const steps = new Steps();

  const exchange = new Exchange(client, `${run}-exchange`);
  try {
    await steps.do("exchange: SubscribeCreditRequests", async () => {
      await exchange.ready();
      return `subscribed as consumer ${run}-exchange`;
    });

    await steps.do("WSP: GetCreditInventory of a new user", async () => {
      try {
        const { creditInventory } = await client.getCreditInventory({ userId: user, asset: "BTC" }, { timeoutMs: CALL_TIMEOUT_MS });
        throw new Error(`want NOT_FOUND, got ${creditInventory?.amount} BTC`);
      } catch (err) {
        if (err instanceof ConnectError && err.code === Code.NotFound) return "NOT_FOUND, as it should be";
        throw err;
      }
    });

    await steps.do("WSP: RequestCredit +0.25 BTC, wait 10s", () =>
      requestCredit(client, exchange, {
        userId: user,
        asset: "BTC",
        change: "+0.25",
        chain: "bitcoin",
        address: "bc1qtsexample",
        requestId: r1,
      }, "0.25"),
    );

    await steps.do("exchange: received and accepted request 1", async () => {
      if (!(await exchange.answered.wait(r1, CALL_TIMEOUT_MS))) {
        throw new Error(`${r1} not accepted within ${CALL_TIMEOUT_MS}ms${exchange.failure ? `: ${exchange.failure.message}` : ""}`);
      }
      const others = exchange.answered.size - 1;
      return `accepted ${r1}${others > 0 ? ` (and ${others} left over from earlier runs)` : ""}`;
    });

    await steps.do("WSP: GetCreditRequest", async () => {
      const { creditRequest: rec } = await client.getCreditRequest({ requestId: r1 }, { timeoutMs: CALL_TIMEOUT_MS });
      if (rec?.status !== CreditRequestStatus.ACCEPTED || !rec.decidedAt) {
        throw new Error(`want ACCEPTED with decided_at, got ${rec ? CreditRequestStatus[rec.status] : "no record"}`);
      }
      return `${r1} is ${CreditRequestStatus[rec.status]}, decided at ${timestampDate(rec.decidedAt).toISOString()}`;
    });

    await steps.do("WSP: GetCreditInventory", async () => {
      const { creditInventory: ci } = await client.getCreditInventory({ userId: user, asset: "BTC" }, { timeoutMs: CALL_TIMEOUT_MS });
      if (ci?.amount !== "0.25" || ci.lastRequestId !== r1) {
        throw new Error(`want 0.25 BTC last changed by ${r1}, got ${ci?.amount} by ${ci?.lastRequestId}`);
      }
      return `${ci.amount} BTC (version ${ci.version}, last request ${ci.lastRequestId})`;
    });

    let cursor = "";
    let firstWatch: CreditEvent[] = [];
    await steps.do("watch: WatchCreditEvents from the start", async () => {
      firstWatch = await watch(client, user, "0-0", 2);
      expectEvents(firstWatch, r1, "0-0");
      cursor = firstWatch[firstWatch.length - 1].eventId;
      return `${describe(firstWatch)}; disconnected at event_id ${cursor}`;
    });

    await steps.do("WSP: RequestCredit -0.1 BTC while nobody watches", () =>
      requestCredit(client, exchange, { userId: user, asset: "BTC", change: "-0.1", requestId: r2 }, "0.15"),
    );

    await steps.do("watch: resume with start_after_event_id", async () => {
      const resumed = await watch(client, user, cursor, 2);
      expectEvents(resumed, r2, cursor);
      const seen = new Set(firstWatch.map((e) => e.eventId));
      const again = resumed.find((e) => seen.has(e.eventId));
      if (again) throw new Error(`event ${again.eventId} delivered again after the resume`);
      return `${describe(resumed)}; no gap, no duplicate`;
    });

    await steps.do("exchange: unsubscribe", async () => {
      const err = await exchange.stop();
      if (err) throw err;
      return `answered ${exchange.answered.size} deliveries`;
    });
  } finally {
    await exchange.stop();
  }
  console.log(`credit flow ok: ${steps.n} steps in ${Math.round(performance.now() - steps.start)}ms`);
}

/** Sends `req` with a wait; it must come back ACCEPTED with the expected CI. */
async function requestCredit(
  client: CreditClient,
  exchange: Exchange,
  req: { userId: string; asset: string; change: string; chain?: string; address?: string; requestId: string },
  wantCi: string,
): Promise<string> {
  const { creditRequest: rec } = await client.requestCredit(
    { ...req, wait: { seconds: BigInt(CREDIT_WAIT_S) } },
    { timeoutMs: CREDIT_WAIT_S * 1000 + CALL_TIMEOUT_MS },
  );
  if (rec?.status !== CreditRequestStatus.ACCEPTED) {
    const why = exchange.failure
      ? `; the exchange's subscription failed: ${exchange.failure.message}`
      : rec?.status === CreditRequestStatus.PENDING
        ? " (not answered: does another subscriber of the group hold it?)"
        : "";
    throw new Error(`want ACCEPTED within the wait, got ${rec ? CreditRequestStatus[rec.status] : "no record"}${why}`);
  }
  if (rec.expectedCi !== wantCi) throw new Error(`want expected CI ${wantCi}, got ${rec.expectedCi}`);
  return `${rec.requestId} is ${CreditRequestStatus[rec.status]}, expected CI ${rec.expectedCi}`;
}

/** Watches `userId`'s events after the cursor, takes `n` and disconnects. */
async function watch(client: CreditClient, userId: string, after: string, n: number): Promise<CreditEvent[]> {
  const events: CreditEvent[] = [];
  const abort = new AbortController();
  const stream = client.watchCreditEvents({ userId, startAfterEventId: after }, { signal: abort.signal, timeoutMs: WATCH_TIMEOUT_MS });
  try {
    for await (const { event } of stream) {
      if (event && events.length < n) events.push(event);
      // Disconnect by cancelling: the loop then ends with CANCELED. (A bare
      // `break` also closes the stream, but connect-es 2.1 then keeps the
      // call's deadline timer, and the process, alive until it fires.)
      if (events.length === n) abort.abort();
    }
  } catch (err) {
    if (!(abort.signal.aborted && ConnectError.from(err).code === Code.Canceled)) {
      throw new Error(`after ${events.length} of ${n} events (${describe(events)}): ${message(err)}`);
    }
  }
  if (events.length < n) throw new Error(`the stream ended after ${events.length} of ${n} events (${describe(events)})`);
  return events;
}

/** Exactly REQUESTED then ACCEPTED of `requestId`, ids increasing past the cursor. */
function expectEvents(events: CreditEvent[], requestId: string, after: string): void {
  const want = [CreditEventType.REQUESTED, CreditEventType.ACCEPTED];
  if (events.length !== want.length || events.some((e, i) => e.type !== want[i] || e.requestId !== requestId)) {
    throw new Error(`want REQUESTED and ACCEPTED of ${requestId} in that order, got ${describe(events)}`);
  }
  let prev = after;
  for (const e of events) {
    if (!idAfter(e.eventId, prev)) throw new Error(`event_id ${e.eventId} does not come after ${prev}`);
    prev = e.eventId;
  }
}

/**
 * Compares event ids, Redis stream ids "ms-seq" (otherwise opaque to
 * clients: this check is the example's, not an API guarantee).
 */
function idAfter(a: string, b: string): boolean {
  const parse = (id: string) => id.split("-").map((part) => BigInt(part));
  const [ams, aseq] = parse(a);
  const [bms, bseq] = parse(b);
  return ams > bms || (ams === bms && aseq > bseq);
}

function describe(events: CreditEvent[]): string {
  if (events.length === 0) return "none";
  return events.map((e) => `${e.eventId} ${CreditEventType[e.type]} ${e.requestId}`).join(", ");
}

await main();
