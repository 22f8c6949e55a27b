//! The bridge between Redis streams and gRPC server streams (fan-out
//! `Watch*` and consumer-group `Subscribe*` RPCs). Not built yet: issue
//! "Stream bridge". What every streaming handler shares already lives here.

use std::pin::Pin;

use futures_util::Stream;
use tonic::Status;

/// The response stream type of every server-streaming RPC.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
