//! Tower layers around every gRPC service: metrics, deadlines and draining.
//!
//! - [`MetricsLayer`] counts every call by method and gRPC code, times it to
//!   the end of its response and keeps the calls in flight
//!   ([`crate::metrics`]). Outermost, so refusals of the auth layer count
//!   too.
//! - [`DeadlineLayer`] bounds the time to produce a response by the client's
//!   `grpc-timeout` and the server's `grpc.request_timeout`, whichever is
//!   shorter, and answers DEADLINE_EXCEEDED when it passes. It also tells
//!   the handler which RPC this is and its time limit ([`Call`], a request
//!   extension). It answers a
//!   moment before the client's own deadline ([`DEADLINE_MARGIN`]): the
//!   answer then reaches the client in time, and it beats tonic's built-in
//!   `grpc-timeout` timer, which sits outside every layer and would answer
//!   CANCELLED, not what the gRPC spec says.
//! - [`DrainLayer`] ends every open response stream with UNAVAILABLE once
//!   the server stops, so streaming clients learn at once to resume
//!   elsewhere (by cursor) and the drain is not held up by streams that
//!   would never end on their own (Health/Watch, Watch* RPCs).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

use crate::{
    error::{reason, status},
    metrics::{KnownMethods, MethodMetrics},
};

/// How much earlier than the client's deadline the server gives up (at
/// most a tenth of the deadline). Wide enough that a loaded machine, late
/// to run the call's task, still finds this layer's timer due first: with
/// 5 ms, tonic's own timer won about one call in twenty under load.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// What the server knows of a call before its handler runs; every handler
/// finds it in its request's extensions ([`Call::of`]).
#[derive(Debug, Clone)]
pub struct Call {
    /// The fully-qualified method, e.g. `openoes.credit.v1.CreditService/RequestCredit`.
    pub rpc: String,
    /// The time the call has to answer: the client's deadline (less
    /// [`DEADLINE_MARGIN`]) or `grpc.request_timeout`, whichever is shorter.
    pub limit: Duration,
}

impl Call {
    /// The call of `request`; a request that did not come through the
    /// server's layers (a test calling a handler directly) gets a name of
    /// "this RPC" and no limit.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        request.extensions().get::<Self>().cloned().unwrap_or(Self {
            rpc: "this RPC".into(),
            limit: Duration::MAX,
        })
    }
}

// === impl DeadlineLayer ===

/// Applies per-call deadlines; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    /// Upper bound for every call, whatever the client asks.
    pub max: Duration,
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            max: self.max,
        }
    }
}

/// The service made by [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    max: Duration,
}

impl<S> Service<Request<Body>> for Deadline<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let limit = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|client| client - (client / 10).min(DEADLINE_MARGIN))
            .map_or(self.max, |client| client.min(self.max));
        let rpc = request.uri().path().trim_start_matches('/').to_string();
        request.extensions_mut().insert(Call { rpc, limit });
        let response = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limit, response).await {
                Ok(result) => result,
                Err(_) => Ok(status(
                    Code::DeadlineExceeded,
                    reason::DEADLINE_EXCEEDED,
                    format!("deadline of {limit:?} exceeded"),
                )
                .into_http()),
            }
        })
    }
}

/// Parses a `grpc-timeout` header value: up to 8 digits and a unit
/// (H, M, S, m, u, n), per the gRPC over HTTP/2 spec.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

// === impl DrainLayer ===

/// Ends open response streams with UNAVAILABLE once `stop` is cancelled.
#[derive(Debug, Clone)]
pub struct DrainLayer {
    /// Cancelled when the server stops accepting calls.
    pub stop: CancellationToken,
}

impl<S> Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Drain {
            inner,
            stop: self.stop.clone(),
        }
    }
}

/// The service made by [`DrainLayer`].
#[derive(Debug, Clone)]
pub struct Drain<S> {
    inner: S,
    stop: CancellationToken,
}

impl<S> Service<Request<Body>> for Drain<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<DrainBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<DrainBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let stop = self.stop.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| DrainBody {
                inner,
                stop: Box::pin(stop.cancelled_owned()),
                done: false,
            }))
        })
    }
}

/// A response body that ends with UNAVAILABLE trailers once the server
/// stops, if it is still waiting for its next message.
///
/// Only a body that is *waiting* is cut: a unary response has all its
/// frames ready and is never cut halfway, so an answer already computed
/// (a credit decision, say) is never turned into an error after the fact.
pub struct DrainBody {
    inner: Body,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
}

impl HttpBody for DrainBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.done = frame.is_none();
            return Poll::Ready(frame);
        }
        if this.stop.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.done = true;
        let mut trailers = HeaderMap::new();
        let unavailable = status(
            Code::Unavailable,
            reason::SHUTTING_DOWN,
            "server is shutting down; reconnect (streams resume by cursor)",
        );
        Poll::Ready(Some(match unavailable.add_header(&mut trailers) {
            Ok(()) => Ok(Frame::trailers(trailers)),
            Err(e) => Err(e),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Never claim an exact size: the body may end early.
        SizeHint::default()
    }
}

// === impl MetricsLayer ===

/// Measures every call; see the module docs.
#[derive(Clone)]
pub struct MetricsLayer {
    /// The methods served, with their metrics: any other path is
    /// labelled `other`.
    pub methods: KnownMethods,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Measured {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`MetricsLayer`].
#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    layer: MetricsLayer,
}

impl<S, B> Service<Request<Body>> for Measured<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Send,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
{
    type Response = Response<MeasuredBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<MeasuredBody<B>>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mut call = CallRecord::start(self.layer.methods.of(request.uri().path()));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = match response.await {
                Ok(response) => response,
                Err(e) => {
                    call.set_code(Code::Unknown);
                    return Err(e);
                }
            };
            // Trailers-only (most errors): the code is in the headers.
            if let Some(code) = grpc_status(response.headers()) {
                call.set_code(code);
            }
            Ok(response.map(|inner| MeasuredBody {
                inner,
                call: Some(call),
            }))
        })
    }
}

/// The gRPC status code in `headers` (trailers, or the headers of a
/// trailers-only answer), if there is one.
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// One call being measured; recorded once, when it is dropped: at the end
/// of its response, or earlier if the client goes away (then, without a
/// status, as CANCELLED).
struct CallRecord {
    method: Arc<MethodMetrics>,
    started: tokio::time::Instant,
    code: Option<Code>,
}

impl CallRecord {
    fn start(method: Arc<MethodMetrics>) -> Self {
        method.in_flight().inc();
        Self {
            method,
            started: tokio::time::Instant::now(),
            code: None,
        }
    }

    fn set_code(&mut self, code: Code) {
        self.code = Some(code);
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let m = &self.method;
        m.in_flight().dec();
        m.duration().observe(self.started.elapsed().as_secs_f64());
        m.requests(self.code.unwrap_or(Code::Cancelled)).inc();
    }
}

/// A response body that reads the call's code from its trailers and
/// records the call when it ends.
pub struct MeasuredBody<B> {
    inner: B,
    call: Option<CallRecord>,
}

impl<B> HttpBody for MeasuredBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    if let Some(call) = this.call.as_mut() {
                        call.code = Some(code);
                    }
                    // Trailers end the response: record it now.
                    this.call = None;
                }
            }
            Some(Err(_)) | None => this.call = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None, "more than 8 digits");
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("-5S"), None);
    }
}
