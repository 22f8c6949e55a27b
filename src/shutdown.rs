//! The process-wide stop signal: SIGINT (Ctrl-C) or SIGTERM.

use std::io;

use tokio::signal::unix::{SignalKind, signal};

/// Resolves when the process receives SIGINT or SIGTERM.
///
/// The handlers are installed when this is called, not when it is first
/// polled: call it before start-up work so a signal that arrives during
/// start-up is not lost (or fatal).
pub fn signal_received() -> io::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "stop requested");
    })
}
