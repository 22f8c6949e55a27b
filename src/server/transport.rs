//! The listener's own bounds, below gRPC: how many connections, how long a
//! new one may take to start speaking HTTP/2, and how large a request
//! message may be for its RPC class.
//!
//! What a hostile or broken peer can hold, and what takes it back:
//! - **A connection.** At most `grpc.max_connections` are open at once
//!   ([`bounded`]); one more is accepted and closed at once, so the kernel's
//!   backlog never fills with connections nobody serves. Each holds its slot
//!   ([`BoundedConn`]) until the connection is dropped.
//! - **A connection that says nothing.** A plaintext connection must send
//!   the 24 bytes of the HTTP/2 client preface within
//!   `grpc.handshake_timeout`, else its reads fail and hyper drops it; a TLS
//!   connection has the same time for its TLS handshake (tonic's
//!   `ServerTlsConfig::timeout`). After the preface, HTTP/2 PINGs
//!   (`grpc.keepalive_interval`, `grpc.keepalive_timeout`) drop a peer that
//!   stops answering, and TCP keepalive a peer that is gone.
//! - **Garbage or HTTP/1.1.** hyper serves HTTP/2 only: anything that is
//!   not the preface ends the connection (and gives its slot back).
//! - **Large messages.** [`MessageLimit`] reads each gRPC message's length
//!   prefix as the request body passes and refuses one over its class's
//!   limit before its bytes are buffered (RESOURCE_EXHAUSTED,
//!   MESSAGE_TOO_LARGE); tonic's decoder holds every service to
//!   `grpc.max_message_bytes` behind it. Header blocks are bounded by
//!   `grpc.max_header_list_bytes` (HTTP 431 from h2).

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{
    Code, Status,
    body::Body,
    transport::server::{Connected, TcpConnectInfo},
};

use super::auth::policy::Class;
use crate::{
    config::GrpcConfig,
    error::{Error, RpcError, reason},
};

/// Length of the HTTP/2 client connection preface
/// (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, RFC 9113 section 3.4).
pub const HTTP2_PREFACE_LEN: usize = 24;

/// Length of a gRPC message's prefix: a compressed flag and a big-endian
/// u32 length.
const GRPC_PREFIX_LEN: usize = 5;

// === impl bounded ===

/// `incoming` with at most `config.max_connections` connections open at
/// once and the handshake deadline on each (see the module docs).
pub fn bounded<I>(incoming: I, config: &GrpcConfig) -> impl Stream<Item = io::Result<BoundedConn>>
where
    I: Stream<Item = io::Result<TcpStream>>,
{
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let max = config.max_connections;
    let handshake_timeout = config.handshake_timeout;
    // Warn once per episode of saturation, not once per refused
    // connection: a flood must not become a flood of log lines.
    let saturated = AtomicBool::new(false);
    incoming.filter_map(move |accepted| {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => return Some(Err(e)),
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                saturated.store(false, Ordering::Relaxed);
                Some(Ok(BoundedConn::new(stream, slot, handshake_timeout)))
            }
            Err(_) => {
                if !saturated.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        max_connections = max,
                        "connection cap reached (grpc.max_connections): closing new connections"
                    );
                }
                tracing::debug!(peer = ?stream.peer_addr().ok(), "connection over the cap closed");
                // Dropping it closes it.
                None
            }
        }
    })
}

/// An accepted connection holding its slot of `grpc.max_connections`
/// until it is dropped, whose reads fail if the HTTP/2 preface does not
/// arrive within `grpc.handshake_timeout`.
pub struct BoundedConn {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Armed until [`HTTP2_PREFACE_LEN`] bytes were read.
    handshake: Option<Pin<Box<Sleep>>>,
    /// Bytes still to read before the deadline is disarmed.
    preface_left: usize,
}

impl BoundedConn {
    fn new(inner: TcpStream, slot: OwnedSemaphorePermit, handshake_timeout: Duration) -> Self {
        Self {
            inner,
            _slot: slot,
            handshake: Some(Box::pin(tokio::time::sleep(handshake_timeout))),
            preface_left: HTTP2_PREFACE_LEN,
        }
    }
}

impl AsyncRead for BoundedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The deadline is polled with every read, so its waker is the
        // reader's: a peer that sends nothing still wakes the reader when
        // the deadline passes.
        if let Some(deadline) = &mut this.handshake
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface within grpc.handshake_timeout",
            )));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.handshake.is_some() {
            this.preface_left = this
                .preface_left
                .saturating_sub(buf.filled().len() - before);
            if this.preface_left == 0 {
                this.handshake = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for BoundedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for BoundedConn {
    // The TCP stream's: the auth layer reads the peer from it.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

// === impl MessageLimit ===

/// The largest request message of each RPC class.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// [`Class::Read`]: `grpc.max_read_message_bytes`.
    pub read: usize,
    /// [`Class::Write`]: `grpc.max_message_bytes`.
    pub write: usize,
    /// [`Class::Stream`]: `grpc.max_stream_message_bytes`.
    pub stream: usize,
}

impl MessageLimits {
    /// The limits of `config`.
    pub fn of(config: &GrpcConfig) -> Self {
        Self {
            read: config.max_read_message_bytes,
            write: config.max_message_bytes,
            stream: config.max_stream_message_bytes,
        }
    }

    /// The limit of `class`, and the config field that sets it.
    pub fn of_class(&self, class: Class) -> (usize, &'static str) {
        match class {
            Class::Read => (self.read, "grpc.max_read_message_bytes"),
            Class::Write => (self.write, "grpc.max_message_bytes"),
            Class::Stream => (self.stream, "grpc.max_stream_message_bytes"),
        }
    }
}

/// A request message over its class's limit.
#[derive(Debug, thiserror::Error)]
#[error("a request message of {len} bytes is over the {max}-byte limit of {rpc} ({field})")]
pub struct MessageTooLarge {
    /// The method called.
    pub rpc: String,
    /// The message's length, from its prefix.
    pub len: usize,
    /// The limit.
    pub max: usize,
    /// The config field of the limit.
    pub field: &'static str,
}

impl RpcError for MessageTooLarge {
    fn code(&self) -> Code {
        Code::ResourceExhausted
    }
    fn reason(&self) -> &'static str {
        reason::MESSAGE_TOO_LARGE
    }
}

/// A request body that reads the length prefix of every gRPC message as it
/// passes and fails the body (so the call) with [`MessageTooLarge`] at the
/// first one over `max`, before that message's bytes are buffered. It
/// holds at most a prefix (5 bytes) itself.
pub struct MessageLimit {
    inner: Body,
    rpc: Arc<str>,
    max: usize,
    field: &'static str,
    /// The prefix being read, and how much of it is.
    prefix: [u8; GRPC_PREFIX_LEN],
    have: usize,
    /// Bytes of the current message still to pass.
    remaining: usize,
}

impl MessageLimit {
    /// `inner` limited to `max`-byte messages (`field` sets it).
    pub fn new(inner: Body, rpc: Arc<str>, max: usize, field: &'static str) -> Self {
        Self {
            inner,
            rpc,
            max,
            field,
            prefix: [0; GRPC_PREFIX_LEN],
            have: 0,
            remaining: 0,
        }
    }

    /// Walks `data`; the first message over the limit, if any.
    fn check(&mut self, mut data: &[u8]) -> Result<(), MessageTooLarge> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                continue;
            }
            let n = (GRPC_PREFIX_LEN - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == GRPC_PREFIX_LEN {
                self.have = 0;
                let [_, a, b, c, d] = self.prefix;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                if len > self.max {
                    return Err(MessageTooLarge {
                        rpc: self.rpc.to_string(),
                        len,
                        max: self.max,
                        field: self.field,
                    });
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

impl HttpBody for MessageLimit {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err(e) = this.check(data)
        {
            return Poll::Ready(Some(Err(Status::from(Error::from(e)))));
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

    fn limit(max: usize) -> MessageLimit {
        MessageLimit::new(Body::empty(), "x/Y".into(), max, "grpc.test")
    }

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.resize(GRPC_PREFIX_LEN + len, 7);
        m
    }

    #[test]
    fn prefixes_are_read_across_chunks_and_messages() {
        let mut l = limit(10);
        let mut two = message(10);
        two.extend(message(3));
        // Every split point: a prefix cut anywhere is still read whole.
        for cut in 0..two.len() {
            let mut l2 = limit(10);
            l2.check(&two[..cut]).expect("under");
            l2.check(&two[cut..]).expect("under");
        }
        l.check(&two).expect("both under");
        let mut over = message(3);
        over.extend(message(11));
        let e = limit(10).check(&over).expect_err("second is over");
        assert_eq!((e.len, e.max), (11, 10));
        // Bytes of a message are never taken for a prefix.
        let mut l = limit(10);
        l.check(&message(10)[..7]).expect("part");
        l.check(&[0xff; 8]).expect("the rest of its body");
    }
}
