//! The `/metrics` listener: plain HTTP/1.1 (hyper), apart from the gRPC
//! port, `GET /metrics` only.
//!
//! Scrapers are few and trusted-ish, but the port may be reachable by
//! more: every connection is bounded ([`MAX_CONNECTIONS`] at once, request
//! headers within [`HEADER_TIMEOUT`], whole connection within
//! [`CONNECTION_LIFETIME`]), and nothing a request carries is read beyond
//! its method, path and `Accept` header.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Connections served at once; more wait in the accept queue. A scraper
/// or two, plus someone with curl.
pub const MAX_CONNECTIONS: usize = 16;

/// Time a client has to send its request headers (slowloris bound).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a connection (keep-alive included) is held; a scraper simply
/// reconnects.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The OpenMetrics content type, served when the scraper's `Accept` asks
/// for it (Prometheus does); the Prometheus text format otherwise.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `metrics` on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, metrics: Metrics, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather
                    // than spin.
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&metrics, &request)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, conn) => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// The answer to one request.
fn answer(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    };
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: GET /metrics\n".into(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /metrics\n".into(),
        );
    }
    let openmetrics = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        reply(StatusCode::OK, OPENMETRICS, metrics.openmetrics_text())
    } else {
        reply(
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            metrics.prometheus_text(),
        )
    }
}
