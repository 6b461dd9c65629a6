//! SRT publish: `srt://HOST:9000?streamid={stream_key}` or the access-control form
//! `streamid=#!::r={stream_key},m=publish`, caller mode, MPEG-TS payload.
//!
//! srt-tokio runs the protocol (handshake, ARQ, TSBPD, AES). This module decides every
//! connection request inside the handshake: the stream ID, the key, the mode, the
//! event's passphrase and a free publishing place, and answers a refusal with an SRT
//! rejection code (Haivision SRT `docs/features/access-control.md`: 1401 unauthorized,
//! 1403 forbidden, 1405 bad mode, 1409 conflict, 1415 unsupported `t`…), so a caller
//! learns why before a single media byte. Accepted connections' payload goes through the MPEG-TS demuxer
//! (`floodlight_media::ts`) into `Frame`s.

pub(crate) mod config;
pub(crate) mod stream_id;

use std::future::Future;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use floodlight_media::StreamEvent;
use floodlight_media::clock::unix_millis;
use floodlight_media::ts::{TsDemuxer, TsError};
use futures::{SinkExt, StreamExt};
use srt_protocol::listener::ListenerStatistics;
use srt_protocol::settings::KeySettings;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::{KeySize, Passphrase};
use srt_tokio::{ConnectionRequest, SrtListener, SrtSocket};
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{Instrument, error, info, warn};

use crate::neighbours::{Protocol, PublishGrant, PublishRefusal, PublishRequest};
use crate::publisher::{Ingest, PublishStopped, SlotTaken};
use crate::rollup::SharedRollup;
pub use config::SrtConfig;
use stream_id::publish_key;

/// Pause before a listener that died is started again, so a packet that kills it over
/// and over cannot spin a core.
const LISTENER_RESTART_DELAY: Duration = Duration::from_secs(1);

/// Binds the SRT listener's UDP socket (with `ingest.srt`'s buffer size), so the binary
/// can report a taken port before anything starts.
pub async fn bind_srt(config: &SrtConfig) -> std::io::Result<UdpSocket> {
    srt_tokio::bind_socket(&config.options()).await
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum SrtError {
    #[error("malformed MPEG-TS: {0}")]
    Media(#[from] TsError),
    #[error(transparent)]
    PublishStopped(#[from] PublishStopped),
}

/// Why a connection request is refused: the metric label, the SRT rejection code, and
/// a reason for the log (never the key).
struct Refusal {
    metric: &'static str,
    code: RejectReason,
    reason: String,
}

impl Refusal {
    fn new(metric: &'static str, code: ServerRejectReason, reason: impl ToString) -> Self {
        Refusal {
            metric,
            code: RejectReason::Server(code),
            reason: reason.to_string(),
        }
    }
}

/// Accepts SRT publishers on `socket` until `shutdown` resolves. Each connection runs in
/// its own tasks: one bad publisher never affects another. The published srt-protocol
/// 0.4.4 panicked srt-tokio's listener task (and with it every connection on the port) on
/// a few handshakes any caller can send; the vendored, patched copy does not
/// (vendor/README.md, fuzz target `srt_listener`). Should the listener task still die,
/// it is started again on the same socket, so SRT ingest never stays down.
pub async fn serve_srt(ingest: Ingest, socket: UdpSocket, shutdown: impl Future<Output = ()>) {
    let config = ingest.config.srt.clone();
    let local = match socket.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            error!(error = %e, "srt socket has no local address");
            return;
        }
    };
    let socket = match socket.into_std() {
        Ok(socket) => socket,
        Err(e) => {
            error!(error = %e, "srt socket unusable");
            return;
        }
    };
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let next_id = Arc::new(AtomicU64::new(1));
    let interval = ingest.config.error_log_interval();
    let refusals = SharedRollup::new("srt connections refused", interval);
    tokio::pin!(shutdown);
    loop {
        let bound = async {
            let udp = UdpSocket::from_std(socket.try_clone()?)?;
            SrtListener::builder()
                .set(|o| *o = config.options())
                .socket(udp)
                .bind(local)
                .await
        };
        let (mut listener, mut incoming) = match bound.await {
            Ok(bound) => bound,
            Err(e) => {
                error!(error = %e, %local, "srt listener cannot start");
                return;
            }
        };
        info!(%local, "srt listener started");
        tokio::spawn(
            count_malformed(listener.statistics().clone(), refusals.clone(), interval)
                .in_current_span(),
        );
        let requests = incoming.incoming();
        loop {
            let request = tokio::select! {
                _ = &mut shutdown => {
                    listener.close().await;
                    return;
                }
                request = requests.next() => request,
            };
            let Some(request) = request else { break };
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let peer = request.remote();
            let span = tracing::info_span!("srt", conn = id, %peer, event = tracing::field::Empty);
            let request = handle_request(ingest.clone(), request, limit.clone(), refusals.clone());
            tokio::spawn(request.instrument(span));
        }
        // The listener task is gone (it panicked): its connections are cut off too.
        error!("srt listener stopped unexpectedly; starting it again");
        metrics::counter!("floodlight_ingest_srt_listener_restarts_total").increment(1);
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(LISTENER_RESTART_DELAY) => {}
        }
    }
}

fn rejected(metric: &'static str) {
    metrics::counter!("floodlight_ingest_rejected_total", "protocol" => "srt", "reason" => metric)
        .increment(1);
}

/// Counts the datagrams srt-protocol could not parse (it logs none of them) and logs
/// how many came in each interval, once, with the refusals' summaries. Ends with the
/// listener.
async fn count_malformed(
    mut statistics: impl futures::Stream<Item = ListenerStatistics> + Unpin,
    refusals: SharedRollup,
    interval: Duration,
) {
    let counter = metrics::counter!("floodlight_ingest_srt_malformed_datagrams_total");
    let mut seen = 0;
    let mut unlogged = 0;
    let mut last_log = tokio::time::Instant::now();
    while let Some(stats) = statistics.next().await {
        let total = stats.rx_parse_errors + stats.rx_io_errors;
        let new = total.saturating_sub(seen);
        seen = total;
        counter.increment(new);
        unlogged += new;
        if last_log.elapsed() >= interval {
            if unlogged > 0 {
                warn!(
                    datagrams = unlogged,
                    secs = last_log.elapsed().as_secs(),
                    "malformed datagrams on the srt port"
                );
            }
            unlogged = 0;
            last_log = tokio::time::Instant::now();
        }
        refusals.sweep();
    }
}

async fn refuse(request: ConnectionRequest, refusal: Refusal, refusals: &SharedRollup) {
    rejected(refusal.metric);
    // The handshake carries 1000 + the reason; libsrt callers report the reason itself
    // (srt_getrejectreason: 1401 for SRT_REJX_UNAUTHORIZED, 11 for SRT_REJ_UNSECURE).
    if refusals.admit(request.remote().ip(), refusal.metric) {
        warn!(
            reject_reason = i32::from(refusal.code) - 1000,
            reason = %refusal.reason,
            "srt connection refused in the handshake"
        );
    }
    let _ = request.reject(refusal.code).await;
}

/// Decides a connection request; an accepted one publishes until it ends.
async fn handle_request(
    ingest: Ingest,
    request: ConnectionRequest,
    limit: Arc<Semaphore>,
    refusals: SharedRollup,
) {
    metrics::counter!("floodlight_ingest_connections_total", "protocol" => "srt").increment(1);
    let Ok(permit) = limit.try_acquire_owned() else {
        let refusal = Refusal::new(
            "max_connections",
            ServerRejectReason::Overload,
            "max_connections reached",
        );
        return refuse(request, refusal, &refusals).await;
    };
    let peer = request.remote();
    let handshake_timeout = Duration::from_secs(ingest.config.srt.handshake_timeout_secs);
    let deadline = tokio::time::Instant::now() + handshake_timeout;
    let grant = match tokio::time::timeout_at(deadline, authorize(&ingest, &request)).await {
        Ok(Ok(grant)) => grant,
        Ok(Err(refusal)) => return refuse(request, refusal, &refusals).await,
        Err(_) => {
            let refusal = Refusal::new(
                "auth_unavailable",
                ServerRejectReason::Down,
                "stream key check timed out",
            );
            return refuse(request, refusal, &refusals).await;
        }
    };
    tracing::Span::current().record("event", grant.event_id.as_str());
    if let Err(taken) = ingest.check_room(&grant) {
        return refuse(request, conflict(&taken), &refusals).await;
    }
    let keys = match key_settings(&grant, request.key_size()) {
        Ok(keys) => keys,
        Err(refusal) => return refuse(request, refusal, &refusals).await,
    };
    let socket = match tokio::time::timeout_at(deadline, request.accept(keys)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => {
            // srt-tokio rejected it itself: a wrong passphrase (SRT_REJ_BADSECRET), or no
            // encryption towards an event with a passphrase (SRT_REJ_UNSECURE).
            rejected("handshake_failed");
            if refusals.admit(peer.ip(), "handshake_failed") {
                warn!(error = %e, "srt handshake failed: wrong or missing passphrase");
            }
            return;
        }
        Err(_) => {
            rejected("handshake_timeout");
            warn!("srt handshake not done within handshake_timeout_secs");
            return;
        }
    };
    let negotiated = socket.settings().recv_tsbpd_latency;
    if let Some(wanted) = grant.srt_latency_ms
        && negotiated < Duration::from_millis(u64::from(wanted))
    {
        // srt-tokio's accept takes only the keys per connection; the latency is the
        // listener's or the caller's, whichever is larger.
        warn!(
            wanted_ms = wanted,
            negotiated_ms = negotiated.as_millis() as u64,
            "the event asks for a higher SRT latency than this connection runs at: set latency in the caller"
        );
    }
    let mut publisher = match ingest.start_publish(&grant, Protocol::Srt, socket.settings().remote)
    {
        Ok(publisher) => publisher,
        Err(taken) => {
            // Another publisher took the place between the check and the accept.
            rejected("already_publishing");
            warn!(%taken, "srt publish refused after the handshake");
            return;
        }
    };
    info!(
        latency_ms = negotiated.as_millis() as u64,
        encrypted = grant.srt_passphrase.is_some(),
        "publish started"
    );
    match publish(&ingest, &mut publisher, socket, permit).await {
        Ok(reason) => info!(reason, "publish ended"),
        Err(SrtError::Media(e)) => {
            rejected("malformed_media");
            warn!(error = %e, "closing srt connection");
        }
        Err(e) => warn!(error = %e, "closing srt connection"),
    }
    publisher.end().await;
}

/// The stream ID's key, checked by the control plane.
async fn authorize(ingest: &Ingest, request: &ConnectionRequest) -> Result<PublishGrant, Refusal> {
    let stream_key = publish_key(request.stream_id().map(|id| id.as_str())).map_err(|e| {
        let (metric, code) = match e {
            stream_id::StreamIdError::Mode(_) => ("bad_mode", ServerRejectReason::BadMode),
            stream_id::StreamIdError::Type(_) => ("bad_type", ServerRejectReason::NotSupMedia),
            stream_id::StreamIdError::Missing | stream_id::StreamIdError::NoResource => {
                ("no_key", ServerRejectReason::Unauthorized)
            }
            _ => ("bad_stream_id", ServerRejectReason::BadRequest),
        };
        Refusal::new(metric, code, e)
    })?;
    let request = PublishRequest {
        stream_key,
        protocol: Protocol::Srt,
        remote_addr: request.remote(),
        event_id: None,
    };
    ingest
        .authority
        .authorize(request)
        .await
        .map_err(|refusal| {
            let (metric, code) = match refusal {
                PublishRefusal::UnknownKey => ("unknown_key", ServerRejectReason::Unauthorized),
                PublishRefusal::Forbidden(_) => ("forbidden", ServerRejectReason::Forbidden),
                PublishRefusal::RateLimited => ("rate_limited", ServerRejectReason::Overload),
                _ => ("auth_unavailable", ServerRejectReason::Down),
            };
            Refusal::new(metric, code, refusal)
        })
}

fn conflict(taken: &SlotTaken) -> Refusal {
    Refusal::new("already_publishing", ServerRejectReason::Conflict, taken)
}

/// The keys to accept with: the event's passphrase, at the key length the caller asks
/// for. libsrt callers leave the handshake's key length unset unless `pbkeylen` is given
/// (their default is AES-128, which srt-tokio assumes for an unset length), so an unset
/// length does not tell whether the caller encrypts. Either way srt-protocol refuses a
/// mismatch itself (SRT_REJ_UNSECURE): an unencrypted caller to an event with a
/// passphrase, or key material towards one without (the case the patched srt-protocol
/// refuses instead of panicking). A caller that names its length is refused here.
fn key_settings(grant: &PublishGrant, key_size: KeySize) -> Result<Option<KeySettings>, Refusal> {
    match (&grant.srt_passphrase, key_size) {
        (None, KeySize::Unspecified) => Ok(None),
        (None, _) => Err(Refusal {
            metric: "encryption_mismatch",
            // SRT_REJ_UNSECURE (1011): "password required or unexpected".
            code: RejectReason::Core(srt_protocol::packet::CoreRejectReason::Unsecure),
            reason: "the caller encrypts; this event has no SRT passphrase".to_string(),
        }),
        (Some(passphrase), key_size) => {
            let passphrase = Passphrase::try_from(passphrase.clone()).map_err(|_| {
                Refusal::new(
                    "bad_passphrase_config",
                    ServerRejectReason::InternalServerError,
                    "the event's SRT passphrase is not 10 to 79 characters",
                )
            })?;
            Ok(Some(KeySettings {
                key_size,
                passphrase,
            }))
        }
    }
}

/// How a connection's socket side ended.
enum ReadEnd {
    Closed,
    Idle,
    Failed(std::io::Error),
    Stopped,
}

/// Reads SRT messages off the socket and hands them on without ever waiting: srt-tokio
/// delivers every connection's packets from one listener task, so a connection that
/// stops reading would stall all of them.
async fn read_socket(
    mut socket: SrtSocket,
    tx: mpsc::Sender<(Bytes, i64)>,
    idle: Duration,
    overflow: Arc<AtomicU64>,
    mut stop: oneshot::Receiver<()>,
) -> ReadEnd {
    let end = loop {
        let item = tokio::select! {
            _ = &mut stop => break ReadEnd::Stopped,
            item = tokio::time::timeout(idle, socket.next()) => item,
        };
        match item {
            Err(_) => break ReadEnd::Idle,
            Ok(None) => break ReadEnd::Closed,
            Ok(Some(Err(e))) => break ReadEnd::Failed(e),
            Ok(Some(Ok((_, message)))) => match tx.try_send((message, unix_millis())) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    overflow.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break ReadEnd::Stopped,
            },
        }
    };
    // Close sends SRT's shutdown; a peer that is gone cannot hold it up for long.
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close()).await;
    end
}

/// Demuxes a connection's MPEG-TS into the publisher until the caller leaves.
async fn publish(
    ingest: &Ingest,
    publisher: &mut crate::publisher::Publisher,
    socket: SrtSocket,
    permit: OwnedSemaphorePermit,
) -> Result<&'static str, SrtError> {
    let config = &ingest.config.srt;
    let (tx, mut rx) = mpsc::channel::<(Bytes, i64)>(config.queue_messages.max(1));
    let (stop, stopped) = oneshot::channel();
    let overflow = Arc::new(AtomicU64::new(0));
    let idle = Duration::from_secs(config.idle_timeout_secs);
    let reader_overflow = overflow.clone();
    let reader = tokio::spawn(
        async move {
            let _permit = permit;
            read_socket(socket, tx, idle, reader_overflow, stopped).await
        }
        .in_current_span(),
    );
    let mut demuxer = TsDemuxer::new();
    let mut dropped_seen = 0;
    let overflowed = metrics::counter!("floodlight_ingest_srt_queue_overflow_total");
    let result = async {
        while let Some((message, received_at_ms)) = rx.recv().await {
            publisher.record_bytes(message.len());
            demuxer.push(&message, received_at_ms)?;
            forward(&mut demuxer, publisher).await?;
            let dropped = demuxer.stats().dropped_frames;
            publisher.record_dropped(dropped - dropped_seen);
            dropped_seen = dropped;
            let lost = overflow.swap(0, Ordering::Relaxed);
            if lost > 0 {
                overflowed.increment(lost);
                warn!(messages = lost, "srt queue full: messages dropped");
            }
        }
        demuxer.finish();
        forward(&mut demuxer, publisher).await
    }
    .await;
    let _ = stop.send(());
    let end = reader.await;
    let stats = demuxer.stats();
    info!(
        packets = stats.packets,
        frames = stats.frames,
        dropped_frames = stats.dropped_frames,
        continuity_errors = stats.continuity_errors,
        "srt connection demuxed"
    );
    result?;
    Ok(match end {
        Ok(ReadEnd::Closed) => "closed by the caller",
        Ok(ReadEnd::Idle) => "no payload for idle_timeout_secs",
        Ok(ReadEnd::Failed(e)) => {
            warn!(error = %e, "srt socket failed");
            "socket error"
        }
        Ok(ReadEnd::Stopped) | Err(_) => "stopped",
    })
}

async fn forward(
    demuxer: &mut TsDemuxer,
    publisher: &mut crate::publisher::Publisher,
) -> Result<(), SrtError> {
    while let Some(stamped) = demuxer.poll_event() {
        match stamped.event {
            StreamEvent::Tracks(tracks) => publisher.send_tracks(tracks).await?,
            StreamEvent::Frame(frame) => {
                publisher
                    .send_frame_at(frame, stamped.received_at_ms)
                    .await?
            }
            StreamEvent::Ended => {}
        }
    }
    Ok(())
}
