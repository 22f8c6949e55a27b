//! Hostile transport, over real sockets: garbage bytes, an HTTP/1.1
//! request, a connection that says nothing, one that sends the HTTP/2
//! preface and stalls, more connections than the cap, a message over its
//! class's limit and an oversized header block. The server closes what it
//! must, gives every connection slot back, and serves normal calls after.

mod common;

use std::time::Duration;

use common::{Gateway, Link, wait_for_health};
use openoes::{
    config::Config,
    proto::{
        credit::v1::{self as credit, credit_service_client::CreditServiceClient},
        pledge::v1::{self as pledge, pledge_service_client::PledgeServiceClient},
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_stream::StreamExt;
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

/// Generous: what the server must do happens well within it.
const SOON: Duration = Duration::from_secs(20);
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// True once the server has closed `stream` (EOF or reset), reading and
/// discarding what it sends before; false if it is still open at `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A raw connection the server took into a slot: it sent its HTTP/2
/// SETTINGS frame (a connection over the cap is closed without a byte).
/// Retried until `within`: a slot comes back when the server drops a
/// connection, a moment after its client saw it closed.
async fn connect_served(gateway: &Gateway, within: Duration) -> TcpStream {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
        let mut header = [0u8; 9];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header)).await
        {
            assert_eq!(header[3], 4, "the server's first frame is SETTINGS");
            return stream;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no connection was served within {within:?}");
}

/// True if the server closes `stream` without sending a byte.
async fn closed_unserved(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A health check over a fresh connection succeeds before `within`
/// (retried: a slot comes back when the server drops a connection, a
/// moment after the client saw it closed).
async fn serves_a_new_connection(gateway: &Gateway, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let connected = Channel::from_shared(format!("http://{}", gateway.addr))
            .expect("uri")
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await;
        match connected {
            Ok(channel) => {
                let answer = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                match answer {
                    Ok(_) => return,
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no normal call succeeded within {within:?}: {last}");
}

async fn gateway(link: &Link, tune: impl FnOnce(&mut Config)) -> Gateway {
    let mut config = link.config();
    tune(&mut config);
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
    gateway
}

#[tokio::test]
async fn garbage_bytes_and_http1_requests_are_closed_and_give_their_slot_back() {
    let link = Link::start().await;
    // One slot: a connection the server kept would lock everyone out.
    let gateway = gateway(&link, |c| c.grpc.max_connections = 1).await;
    // Pseudo-random bytes (a fixed LCG: the same run every time).
    let mut seed = 0x2545_f491_u32;
    let garbage: Vec<u8> = (0..8192)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as u8
        })
        .collect();
    let http1 = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n".to_vec();
    let mut bad_frames = PREFACE.to_vec();
    bad_frames.extend_from_slice(&garbage[..512]);
    for (what, bytes) in [
        ("garbage", garbage.clone()),
        ("an HTTP/1.1 request", http1),
        ("the preface, then garbage frames", bad_frames),
    ] {
        let mut stream = connect_served(&gateway, SOON).await;
        // The server may close before all is written: that is fine.
        let _ = stream.write_all(&bytes).await;
        assert!(
            closed_by_server(&mut stream, SOON).await,
            "{what}: the server kept the connection open"
        );
    }
    serves_a_new_connection(&gateway, SOON).await;
    assert!(!gateway.task.is_finished(), "the server is still running");
}

#[tokio::test]
async fn a_connection_that_says_nothing_is_closed_and_the_cap_holds_meanwhile() {
    let link = Link::start().await;
    let gateway = gateway(&link, |c| {
        c.grpc.max_connections = 1;
        c.grpc.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    // Takes the only slot and sends nothing.
    let mut silent = connect_served(&gateway, SOON).await;
    // While it holds the slot, one more connection is closed at once,
    // unserved (whatever it sends).
    let mut extra = TcpStream::connect(gateway.addr).await.expect("connect");
    let _ = extra.write_all(PREFACE).await;
    assert!(
        closed_unserved(&mut extra, SOON).await,
        "a connection over grpc.max_connections was served or stayed open"
    );
    assert!(
        closed_by_server(&mut silent, SOON).await,
        "a connection that sent nothing was not closed (grpc.handshake_timeout)"
    );
    serves_a_new_connection(&gateway, SOON).await;
}

#[tokio::test]
async fn a_connection_that_sends_the_preface_and_stalls_is_closed_by_keepalive() {
    let link = Link::start().await;
    let gateway = gateway(&link, |c| {
        c.grpc.max_connections = 1;
        c.grpc.keepalive_interval = Duration::from_secs(1);
        c.grpc.keepalive_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stalled = connect_served(&gateway, SOON).await;
    // The preface and an empty SETTINGS frame, then nothing: no SETTINGS
    // ack, no PING ack.
    stalled.write_all(PREFACE).await.expect("preface");
    stalled
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .expect("settings");
    assert!(
        closed_by_server(&mut stalled, SOON).await,
        "a stalled HTTP/2 connection was not closed (grpc.keepalive_*)"
    );
    serves_a_new_connection(&gateway, SOON).await;
}

#[tokio::test]
async fn a_message_over_its_class_limit_is_resource_exhausted_before_it_is_read() {
    let link = Link::start().await;
    let gateway = gateway(&link, |c| {
        c.grpc.max_message_bytes = 16 * 1024;
        c.grpc.max_read_message_bytes = 1024;
        c.grpc.max_stream_message_bytes = 1024;
    })
    .await;
    let channel = gateway.channel().await;
    let mut credit = CreditServiceClient::new(channel.clone());
    let mut pledge = PledgeServiceClient::new(channel.clone());
    let too_large = |status: &Status, field: &str| {
        assert_eq!(
            (status.code(), reason(status).as_str()),
            (Code::ResourceExhausted, "MESSAGE_TOO_LARGE"),
            "{status:?}"
        );
        assert!(status.message().contains(field), "{status:?}");
    };

    let read = credit
        .get_credit_inventory(credit::GetCreditInventoryRequest {
            user_id: "a".repeat(2000),
            asset: "BTC".into(),
        })
        .await
        .expect_err("a 2 KB read");
    too_large(&read, "grpc.max_read_message_bytes");

    let deposit = |len: usize| pledge::RecordDepositRequest {
        request_id: "d".repeat(len),
        user_id: "bob".into(),
        asset: "BTC".into(),
        amount: "1".into(),
        chain: "bitcoin".into(),
        address: "bc1q".into(),
        ..Default::default()
    };
    // A 2 KB write is within its class's limit: the handler sees it (and
    // refuses the over-long id).
    let write = pledge
        .record_deposit(deposit(2000))
        .await
        .expect_err("a bad id");
    assert_eq!(write.code(), Code::InvalidArgument, "{write:?}");
    let write = pledge
        .record_deposit(deposit(20_000))
        .await
        .expect_err("a 20 KB write");
    too_large(&write, "grpc.max_message_bytes");

    let stream = credit
        .watch_credit_events(credit::WatchCreditEventsRequest {
            start_after_event_id: "0".repeat(2000),
            ..Default::default()
        })
        .await;
    let status = match stream {
        Err(status) => status,
        Ok(response) => response
            .into_inner()
            .next()
            .await
            .expect("an answer")
            .expect_err("refused"),
    };
    too_large(&status, "grpc.max_stream_message_bytes");

    // The connection still serves.
    let fine = credit
        .get_credit_inventory(credit::GetCreditInventoryRequest {
            user_id: "alice".into(),
            asset: "BTC".into(),
        })
        .await;
    assert!(
        !matches!(&fine, Err(s) if s.code() == Code::ResourceExhausted),
        "{fine:?}"
    );
    let mut health = HealthClient::new(channel);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health on the same connection");
}

#[tokio::test]
async fn an_oversized_header_block_is_refused_and_the_server_serves_on() {
    let link = Link::start().await;
    let gateway = gateway(&link, |c| c.grpc.max_header_list_bytes = 4096).await;
    let channel = gateway.channel().await;
    let check = |pad: usize| {
        let channel = channel.clone();
        async move {
            let mut request = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request
                .metadata_mut()
                .insert("x-pad", "p".repeat(pad).parse().expect("ascii"));
            HealthClient::new(channel).check(request).await
        }
    };
    check(1024).await.expect("1 KB of headers pass");
    let status = check(8192).await.expect_err("8 KB of headers");
    assert!(
        status.message().contains("431"),
        "refused by h2 with HTTP 431: {status:?}"
    );
    serves_a_new_connection(&gateway, SOON).await;
    check(1024).await.expect("the channel serves on");
}
