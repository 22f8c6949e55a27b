// A CreditService client on Connect's gRPC transport for Node (HTTP/2,
// plaintext: `openoes dev` serves h2c on 127.0.0.1:50051).
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import { CreditService } from "./gen/openoes/credit/v1/credit_pb.js";

export type CreditClient = Client<typeof CreditService>;

export interface CreditConnection {
  readonly client: CreditClient;
  /** Closes the HTTP/2 connection and every stream still open on it. */
  close(): void;
}

/**
 * Connects lazily to a gateway at `addr` (host:port): the first call opens
 * the connection. Calls without their own `timeoutMs` get `defaultTimeoutMs`.
 */
export function connectCredit(addr: string, defaultTimeoutMs = 5_000): CreditConnection {
  const baseUrl = `http://${addr}`;
  // Our own session manager, so close() can end the connection and the
  // process can exit without waiting for the idle timeout.
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager, defaultTimeoutMs });
  return {
    client: createClient(CreditService, transport),
    close: () => sessionManager.abort(),
  };
}
