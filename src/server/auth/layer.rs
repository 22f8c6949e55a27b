//! The tower layer every call goes through first: who is calling
//! ([`Authenticator`]), may they ([`policy`]), within their budget
//! ([`RateLimiter`]) and stream bound, messages within their class's size
//! ([`MessageLimit`]), and the audit trail.
//!
//! The audit trail: every call of a [`Class::Write`] RPC, and every call
//! refused here, writes exactly one line with target `audit`: principal,
//! rpc, request_id (read from the request message as it passes, if the
//! message has one), code, latency_ms and peer. The line is written when
//! the outcome is known: at once for a refusal or a trailers-only answer,
//! else when the response's trailers pass. A call whose response never
//! ends (the client went away, or the drain cut it) is logged when it is
//! dropped, as CANCELLED. A refused call is logged before its message is
//! read, so without a request_id. Credentials never reach a line: only the
//! principal's configured name does.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use prost::Message;
use tokio::time::Instant;
use tonic::{
    Code, Status,
    body::Body,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower::{Layer, Service};

use super::{
    AuthError, Authenticator,
    policy::{self, Class},
    rate::RateLimiter,
};
use crate::{
    config::{Config, ReflectionAccess},
    error::{Error, RpcError, reason},
    server::{
        layers::grpc_status,
        transport::{MessageLimit, MessageLimits},
    },
    validate::{echo, is_valid_id},
};

/// Largest request message the audit trail reads a request_id from;
/// larger ones (bulk bin uploads) are logged without. Bounds the bytes
/// held twice per call.
pub const MAX_AUDITED_MESSAGE: usize = 64 * 1024;

/// Everything the layer decides with, built once per server.
pub struct Gate {
    auth: Authenticator,
    reflection: ReflectionAccess,
    limiter: Option<RateLimiter>,
    streams: StreamCounts,
    max_streams: usize,
    /// The field number of `request_id` in each RPC's request message.
    request_ids: HashMap<String, u32>,
    /// The largest request message per class.
    message_limits: MessageLimits,
}

impl Gate {
    /// The gate of `config`; `limiter` if rate limits are on.
    pub fn new(config: &Config, limiter: Option<RateLimiter>, descriptors: &[&[u8]]) -> Self {
        Self {
            auth: Authenticator::new(&config.auth),
            reflection: config.auth.reflection,
            limiter,
            streams: StreamCounts::default(),
            max_streams: config.rate_limit.max_streams_per_principal,
            request_ids: request_id_fields(descriptors),
            message_limits: MessageLimits::of(&config.grpc),
        }
    }
}

/// `package.Service/Method` -> field number of `request_id` in its input.
fn request_id_fields(descriptors: &[&[u8]]) -> HashMap<String, u32> {
    let mut fields = HashMap::new();
    let mut methods = Vec::new();
    for set in descriptors {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
            continue;
        };
        for file in set.file {
            for message in &file.message_type {
                if let Some(f) = message.field.iter().find(|f| f.name() == "request_id") {
                    let name = format!(".{}.{}", file.package(), message.name());
                    fields.insert(name, f.number() as u32);
                }
            }
            for service in &file.service {
                for method in &service.method {
                    let rpc = format!("{}.{}/{}", file.package(), service.name(), method.name());
                    methods.push((rpc, method.input_type().to_string()));
                }
            }
        }
    }
    methods
        .into_iter()
        .filter_map(|(rpc, input)| Some((rpc, *fields.get(&input)?)))
        .collect()
}

// === impl AuthLayer ===

/// Applies the [`Gate`]; see the module docs.
#[derive(Clone)]
pub struct AuthLayer {
    /// The decisions.
    pub gate: Arc<Gate>,
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S, B> Service<Request<Body>> for Auth<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service that was polled ready serves this call; its clone
        // waits for the next poll_ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(self.gate.clone().serve(inner, request))
    }
}

impl Gate {
    async fn serve<S, B>(
        self: Arc<Self>,
        mut inner: S,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        let started = Instant::now();
        let rpc: Arc<str> = request.uri().path().trim_start_matches('/').into();
        let rule = policy::lookup(&rpc, self.reflection);
        let tls = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .cloned();
        let peer = tls
            .as_ref()
            .and_then(|i| i.get_ref().remote_addr())
            .or_else(|| {
                request
                    .extensions()
                    .get::<TcpConnectInfo>()
                    .and_then(|i| i.remote_addr())
            });
        let certs = tls.as_ref().and_then(|i| i.peer_certs());
        let admitted = self.auth.admit(
            &rpc,
            rule.map(|(access, _)| access),
            request.headers(),
            certs.as_deref().map(Vec::as_slice),
        );
        let principal = match admitted {
            Ok(principal) => principal,
            Err(e) => {
                let name = match &e {
                    AuthError::RoleNotAllowed { principal, .. } => principal.clone(),
                    _ => "-".into(),
                };
                return Ok(self.refuse(AuditRecord::new(name, rpc, peer, started), e));
            }
        };
        let class = rule.map_or(Class::Read, |(_, class)| class);
        let record = (class == Class::Write)
            .then(|| AuditRecord::new(principal.name.clone(), rpc.clone(), peer, started));
        // Budgets and stream bounds are per principal: only with
        // principals (auth enforced), never for open health probes.
        let counted =
            self.auth.enforces() && rule.is_some_and(|(access, _)| access != policy::Access::Open);
        if counted
            && let Some(limiter) = &self.limiter
            && let Err(e) = limiter.check(&principal.name, class).await
        {
            let record = record.unwrap_or_else(|| {
                AuditRecord::new(principal.name.clone(), rpc.clone(), peer, started)
            });
            return Ok(self.refuse(record, e));
        }
        let permit = if counted && class == Class::Stream {
            match self.streams.acquire(&principal.name, self.max_streams) {
                Some(permit) => Some(permit),
                None => {
                    let record =
                        AuditRecord::new(principal.name.clone(), rpc.clone(), peer, started);
                    return Ok(self.refuse(
                        record,
                        TooManyStreams {
                            principal: principal.name.to_string(),
                            max: self.max_streams,
                        },
                    ));
                }
            }
        } else {
            None
        };
        // Every admitted call's messages are held to its class's size,
        // checked as they pass, before the decoder buffers one.
        let (max, field) = self.message_limits.of_class(class);
        let body = std::mem::take(request.body_mut());
        *request.body_mut() = Body::new(MessageLimit::new(body, rpc.clone(), max, field));
        if let Some(record) = &record
            && let Some(field) = self.request_ids.get(&*rpc)
        {
            let body = std::mem::take(request.body_mut());
            *request.body_mut() = Body::new(RequestIdTap {
                inner: body,
                field: *field,
                held: Vec::new(),
                done: false,
                slot: record.request_id.clone(),
            });
        }
        request.extensions_mut().insert(principal);
        let response = inner.call(request).await?;
        let (parts, body) = response.into_parts();
        let mut record = record;
        if let Some(code) = grpc_status(&parts.headers) {
            // Trailers-only: the outcome is known now.
            if let Some(mut r) = record.take() {
                r.code = Some(code);
            }
        }
        let body = Body::new(AuditBody {
            inner: body,
            record,
            _permit: permit,
        });
        Ok(Response::from_parts(parts, body))
    }

    /// The answer to a call refused here, audited.
    fn refuse(&self, mut record: AuditRecord, error: impl Into<Error>) -> Response<Body> {
        let status = Status::from(error.into());
        record.code = Some(status.code());
        drop(record);
        status.into_http()
    }
}

/// More streams than `rate_limit.max_streams_per_principal`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{principal} holds {max} streams on this gateway (rate_limit.max_streams_per_principal); close one first"
)]
pub struct TooManyStreams {
    /// The principal.
    pub principal: String,
    /// The bound.
    pub max: usize,
}

impl RpcError for TooManyStreams {
    fn code(&self) -> Code {
        Code::ResourceExhausted
    }
    fn reason(&self) -> &'static str {
        reason::TOO_MANY_STREAMS
    }
}

// === impl StreamCounts ===

/// Open streams per principal on this gateway. Entries go when their count
/// reaches zero, so the map holds at most one entry per configured
/// principal.
#[derive(Default, Clone)]
struct StreamCounts(Arc<Mutex<HashMap<Arc<str>, usize>>>);

/// One open stream, counted until the response body is dropped.
struct StreamPermit {
    counts: StreamCounts,
    principal: Arc<str>,
}

impl StreamCounts {
    fn acquire(&self, principal: &Arc<str>, max: usize) -> Option<StreamPermit> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(principal.clone()).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(StreamPermit {
            counts: self.clone(),
            principal: principal.clone(),
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.principal);
            }
        }
    }
}

// === impl AuditRecord ===

/// One audit line, written when dropped.
struct AuditRecord {
    principal: Arc<str>,
    rpc: Arc<str>,
    peer: Option<SocketAddr>,
    started: Instant,
    /// Filled by [`RequestIdTap`] as the request message passes.
    request_id: Arc<Mutex<Option<String>>>,
    /// The outcome; `None` when dropped means the call never finished.
    code: Option<Code>,
}

impl AuditRecord {
    fn new(principal: Arc<str>, rpc: Arc<str>, peer: Option<SocketAddr>, started: Instant) -> Self {
        Self {
            principal,
            rpc,
            peer,
            started,
            request_id: Arc::default(),
            code: None,
        }
    }
}

impl Drop for AuditRecord {
    fn drop(&mut self) {
        let request_id = self
            .request_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        let code = self.code.unwrap_or(Code::Cancelled);
        tracing::info!(
            target: "audit",
            principal = %self.principal,
            rpc = %self.rpc,
            request_id = %request_id,
            code = code_name(code),
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            peer = %self.peer.map(|p| p.to_string()).unwrap_or_default(),
            "call"
        );
    }
}

pub use crate::metrics::code_name;

// === impl AuditBody ===

/// A response body that reads the outcome from the trailers for the audit
/// line and holds the stream's permit until it is dropped.
struct AuditBody<B> {
    inner: B,
    record: Option<AuditRecord>,
    _permit: Option<StreamPermit>,
}

impl<B> HttpBody for AuditBody<B>
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
                if let Some(code) = frame.trailers_ref().and_then(grpc_status)
                    && let Some(mut record) = this.record.take()
                {
                    record.code = Some(code);
                }
            }
            // Ended without trailers or failed: logged as unfinished.
            Some(Err(_)) | None => drop(this.record.take()),
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

// === impl RequestIdTap ===

/// A request body that reads the `request_id` field of the first gRPC
/// message as it passes (holding at most [`MAX_AUDITED_MESSAGE`] bytes of
/// it, as cheap `Bytes` clones) and changes nothing.
struct RequestIdTap {
    inner: Body,
    field: u32,
    held: Vec<Bytes>,
    done: bool,
    slot: Arc<Mutex<Option<String>>>,
}

impl HttpBody for RequestIdTap {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if !this.done
            && let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            this.held.push(data.clone());
            this.inspect();
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

impl RequestIdTap {
    fn inspect(&mut self) {
        let held: usize = self.held.iter().map(Bytes::len).sum();
        if held < 5 {
            return;
        }
        let mut joined = Vec::with_capacity(held.min(MAX_AUDITED_MESSAGE + 5));
        for chunk in &self.held {
            let room = (MAX_AUDITED_MESSAGE + 5).saturating_sub(joined.len());
            joined.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        let compressed = joined[0] != 0;
        let len = u32::from_be_bytes([joined[1], joined[2], joined[3], joined[4]]) as usize;
        if compressed || len > MAX_AUDITED_MESSAGE {
            self.finish(None);
        } else if joined.len() >= 5 + len {
            let id = string_field(&joined[5..5 + len], self.field);
            self.finish(id);
        }
    }

    fn finish(&mut self, id: Option<String>) {
        self.done = true;
        self.held = Vec::new();
        if let Some(id) = id {
            // A valid id as is; anything else quoted and cut, so a hostile
            // id cannot forge log lines.
            let shown = if is_valid_id(&id) { id } else { echo(&id) };
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(shown);
        }
    }
}

/// The last value of string field `field` at the top level of a protobuf
/// message, or `None` (absent, or the message does not parse).
fn string_field(mut message: &[u8], field: u32) -> Option<String> {
    let mut found = None;
    while message.has_remaining() {
        let key = prost::encoding::decode_varint(&mut message).ok()?;
        let (number, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => {
                prost::encoding::decode_varint(&mut message).ok()?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if message.len() < n {
                    return None;
                }
                message.advance(n);
            }
            2 => {
                let len =
                    usize::try_from(prost::encoding::decode_varint(&mut message).ok()?).ok()?;
                if message.len() < len {
                    return None;
                }
                if number == field {
                    found = Some(String::from_utf8_lossy(&message[..len]).into_owned());
                }
                message.advance(len);
            }
            _ => return None,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_read_from_the_message() {
        use crate::proto::credit::v1::RequestCreditRequest;
        let message = RequestCreditRequest {
            user_id: "alice".into(),
            request_id: "demo-1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let fields = request_id_fields(&[crate::proto::FILE_DESCRIPTOR_SET]);
        let field = fields["openoes.credit.v1.CreditService/RequestCredit"];
        assert_eq!(string_field(&message, field).as_deref(), Some("demo-1"));
        assert_eq!(string_field(&message, field + 100), None);
        assert_eq!(string_field(&[0x0a, 0x05, b'a'], 1), None, "truncated");
    }

    #[test]
    fn stream_counts_are_bounded_and_released() {
        let counts = StreamCounts::default();
        let name: Arc<str> = "ops".into();
        let a = counts.acquire(&name, 2).expect("first");
        let _b = counts.acquire(&name, 2).expect("second");
        assert!(
            counts.acquire(&name, 2).is_none(),
            "third is over the bound"
        );
        drop(a);
        assert!(counts.acquire(&name, 2).is_some(), "a slot came back");
    }
}
