//! WHIP publish (RFC 9725): `POST http://HOST:8070/whip/{event_id}` with
//! `Authorization: Bearer {stream_key}` and an SDP offer; the answer comes back with 201
//! and a `Location` resource whose `DELETE` ends the session (§4.2). WebRTC is str0m
//! (sans-IO), run ICE-lite (RFC 8445 §2.5: the server only answers checks) on one UDP port
//! per session from `ingest.whip.udp_ports`. Only H.264 (packetization-mode 1, Constrained
//! Baseline preferred) and Opus are negotiated; Opus becomes AAC in the transcoder.

pub(crate) mod config;
mod error;
mod peer;
pub(crate) mod stun;
mod to_stream;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use floodlight_media::{OpusConfig, TIMESCALE};
use str0m::change::SdpOffer;
use str0m::crypto::CryptoProvider;
use str0m::format::Codec;
use str0m::media::Mid;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{oneshot, watch};
use tower_http::cors::{Any, CorsLayer};
use tracing::{Instrument, info, warn};

pub use config::{InvalidWhipConfig, PortRange, WhipConfig};
use error::WhipError;
use peer::{Peer, PeerEnd};
use to_stream::{KeyframePolicy, WebRtcToStream};

use crate::neighbours::{Protocol, PublishRequest};
use crate::publisher::Ingest;
use crate::rollup::SharedRollup;
use floodlight_media::sync::lock;

/// H.264 payload configurations we receive, in order of preference (RFC 6184 §8.1
/// profile-level-id): Constrained Baseline (what browsers' hardware and OpenH264 encode),
/// then Baseline, Main and High; all packetization-mode 1 (FU-A/STAP-A), level 3.1 and
/// up (str0m accepts a higher offered level). (payload type, RTX payload type, profile).
const H264_RECEIVE: [(u8, u8, u32); 4] = [
    (108, 109, 0x42e01f),
    (127, 121, 0x42001f),
    (123, 119, 0x4d001f),
    (114, 115, 0x64001f),
];

/// Opus as WebRTC always signals it (RFC 7587 §7: `opus/48000/2`); a mono sender's
/// packets decode as two equal channels.
const WEBRTC_OPUS: OpusConfig = OpusConfig {
    channels: 2,
    pre_skip: 0,
};

/// The WHIP endpoint's state, shared by its handlers.
#[derive(Clone)]
struct Whip {
    ingest: Ingest,
    config: Arc<WhipConfig>,
    crypto: Arc<CryptoProvider>,
    /// Live session resources by id.
    sessions: Arc<Mutex<HashMap<String, SessionEntry>>>,
    /// Where the next session's port search starts (round robin over the range, so a
    /// port just freed is not reused at once by a new session).
    next_port: Arc<AtomicUsize>,
    render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    shutdown: watch::Receiver<bool>,
    /// Refusals are logged rolled up per address.
    refusals: SharedRollup,
}

struct SessionEntry {
    event_id: String,
    delete: Option<oneshot::Sender<()>>,
}

/// The addresses of the HTTP connection a request came on: the local one is where the
/// publisher can reach us, so it is the default ICE candidate.
#[derive(Debug, Clone, Copy)]
struct Conn {
    local: SocketAddr,
    remote: SocketAddr,
}

impl Connected<IncomingStream<'_, TcpListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        let remote = *stream.remote_addr();
        Conn {
            local: stream.io().local_addr().unwrap_or(remote),
            remote,
        }
    }
}

/// Serves WHIP on `listener` until `shutdown` resolves; then every session ends (its
/// stream goes into the transcoder's reconnect grace period).
pub async fn serve_whip(
    ingest: Ingest,
    listener: TcpListener,
    render_metrics: impl Fn() -> String + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(ingest.config.whip.clone());
    let (stop, stopped) = watch::channel(false);
    let whip = Whip {
        config: config.clone(),
        crypto: Arc::new(str0m::crypto::from_feature_flags()),
        sessions: Arc::default(),
        next_port: Arc::default(),
        refusals: SharedRollup::new("whip publishes refused", ingest.config.error_log_interval()),
        ingest,
        render_metrics: Arc::new(render_metrics),
        shutdown: stopped,
    };
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::DELETE, Method::PATCH])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::LOCATION]);
    let app = Router::new()
        .route("/whip/{event_id}", post(publish))
        .route(
            "/whip/{event_id}/{resource}",
            axum::routing::delete(delete_session).patch(patch_session),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(whip): State<Whip>| async move { (whip.render_metrics)() }),
        )
        .fallback(|| async {
            WhipError::NotFound(
                "no such WHIP endpoint: publish with POST /whip/{event_id}".to_string(),
            )
        })
        .layer(DefaultBodyLimit::max(config.max_offer_bytes))
        .layer(cors)
        .with_state(whip);
    axum::serve(listener, app.into_make_service_with_connect_info::<Conn>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await
}

/// `POST /whip/{event_id}`: authorize, negotiate, start the session (RFC 9725 §4.2).
async fn publish(
    State(whip): State<Whip>,
    Path(event_id): Path<String>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    metrics::counter!("floodlight_ingest_connections_total", "protocol" => "whip").increment(1);
    match whip.publish(&event_id, conn, &headers, &body).await {
        Ok(created) => created,
        Err(e) => {
            metrics::counter!("floodlight_ingest_rejected_total", "protocol" => "whip", "reason" => e.metric())
                .increment(1);
            if whip.refusals.admit(conn.remote.ip(), e.metric()) {
                warn!(event = %event_id, peer = %conn.remote, error = %e, "whip publish refused");
            }
            e.into_response()
        }
    }
}

/// `DELETE /whip/{event_id}/{resource}`: the publisher ends its session (§4.2).
async fn delete_session(
    State(whip): State<Whip>,
    Path((event_id, resource)): Path<(String, String)>,
) -> Result<StatusCode, WhipError> {
    let delete = {
        let mut sessions = lock(&whip.sessions);
        sessions
            .get_mut(&resource)
            .filter(|s| s.event_id == event_id)
            .and_then(|s| s.delete.take())
    };
    match delete {
        Some(delete) => {
            let _ = delete.send(());
            Ok(StatusCode::OK)
        }
        None => Err(WhipError::NotFound(format!(
            "no live WHIP session {resource:?} for event {event_id:?}"
        ))),
    }
}

/// `PATCH` carries trickle ICE candidates and ICE restarts (§4.3), which a server without
/// them answers 405: publishers then send every candidate in the offer.
async fn patch_session() -> WhipError {
    WhipError::MethodNotAllowed(
        "trickle ICE and ICE restarts are not supported: put all candidates in the offer"
            .to_string(),
    )
}

/// A negotiated session, ready to run.
struct Negotiated {
    rtc: Rtc,
    socket: UdpSocket,
    candidate: SocketAddr,
    local_password: String,
    answer: String,
    video_mid: Mid,
    audio: Option<OpusConfig>,
}

impl Whip {
    async fn publish(
        &self,
        event_id: &str,
        conn: Conn,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, WhipError> {
        check_content_type(headers)?;
        let stream_key = bearer(headers)?;
        if lock(&self.sessions).len() >= self.config.max_sessions {
            return Err(WhipError::Unavailable(
                "this server is at its WHIP session limit (ingest.whip.max_sessions)".to_string(),
            ));
        }
        // Never log the key itself: it is a publishing credential.
        let grant = self
            .ingest
            .authority
            .authorize(PublishRequest {
                stream_key,
                protocol: Protocol::Whip,
                remote_addr: conn.remote,
                event_id: Some(event_id),
            })
            .await?;
        let offer = std::str::from_utf8(body)
            .map_err(|_| WhipError::Unprocessable("the SDP offer is not UTF-8".to_string()))?;
        let negotiated = self.negotiate(offer, conn.local.ip()).await?;
        let publisher = self
            .ingest
            .start_publish(&grant, Protocol::Whip, conn.remote)?;

        let resource = uuid::Uuid::new_v4().simple().to_string();
        let (delete, deleted) = oneshot::channel();
        lock(&self.sessions).insert(
            resource.clone(),
            SessionEntry {
                event_id: event_id.to_string(),
                delete: Some(delete),
            },
        );
        let policy = KeyframePolicy {
            interval_90k: (self.config.keyframe_interval().as_millis() as i64)
                * i64::from(TIMESCALE / 1000),
            min_gap: self.config.keyframe_request_min_interval(),
        };
        let peer = Peer {
            rtc: negotiated.rtc,
            socket: negotiated.socket,
            candidate: negotiated.candidate,
            local_password: negotiated.local_password,
            crypto: self.crypto.clone(),
            publisher,
            converter: WebRtcToStream::new(negotiated.audio, policy),
            video_mid: negotiated.video_mid,
            config: self.config.clone(),
        };
        let span = tracing::info_span!(
            "whip",
            event = event_id,
            session = %resource,
            peer = %conn.remote,
            udp = %negotiated.candidate,
        );
        let sessions = self.sessions.clone();
        let shutdown = self.shutdown.clone();
        let id = resource.clone();
        tokio::spawn(
            async move {
                info!(audio = negotiated.audio.is_some(), "whip session started");
                let end = peer.run(deleted, shutdown).await;
                lock(&sessions).remove(&id);
                match end {
                    PeerEnd::Deleted | PeerEnd::Shutdown => {
                        info!(reason = %end, "whip session ended")
                    }
                    _ => warn!(reason = %end, "whip session ended"),
                }
            }
            .instrument(span),
        );

        let location = format!("/whip/{event_id}/{resource}");
        let mut response = (StatusCode::CREATED, negotiated.answer).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/sdp"),
        );
        if let Ok(location) = HeaderValue::from_str(&location) {
            headers.insert(header::LOCATION, location);
        }
        Ok(response)
    }

    /// Answers the offer: H.264 + Opus receive-only, ICE-lite, one host candidate on a
    /// port of our range.
    async fn negotiate(&self, offer: &str, local_ip: IpAddr) -> Result<Negotiated, WhipError> {
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|e| WhipError::Unprocessable(format!("unparsable SDP offer: {e}")))?;
        let (socket, candidate) = self.bind_udp(local_ip).await?;
        let credentials = IceCreds::new();
        let mut config = RtcConfig::new()
            .set_ice_lite(true)
            .set_crypto_provider(self.crypto.clone())
            .set_local_ice_credentials(credentials.clone())
            .clear_codecs()
            .enable_opus(true, false);
        for (pt, rtx, profile) in H264_RECEIVE {
            config
                .codec_config()
                .add_h264(pt.into(), Some(rtx.into()), true, profile);
        }
        let mut rtc = config.build(Instant::now());
        for ip in self.candidate_ips(candidate.ip()) {
            let host = Candidate::host(SocketAddr::new(ip, candidate.port()), "udp")
                .map_err(|e| WhipError::Unavailable(format!("ICE candidate {ip}: {e}")))?;
            rtc.add_local_candidate(host);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WhipError::Unprocessable(format!("cannot answer the SDP offer: {e}")))?;

        // The answer lists, per m-line, only the payload types both sides support.
        let mut video_mid = None;
        let mut audio = None;
        for line in answer.media_lines.iter().filter(|l| !l.disabled) {
            let codecs: Vec<Codec> = line.rtp_params().iter().map(|p| p.spec().codec).collect();
            if codecs.contains(&Codec::H264) && video_mid.is_none() {
                video_mid = Some(line.mid());
            } else if codecs.contains(&Codec::Opus) && audio.is_none() {
                audio = Some(WEBRTC_OPUS);
            }
        }
        let Some(video_mid) = video_mid else {
            return Err(WhipError::Unprocessable(
                "the offer has no H.264 video with packetization-mode=1; this server receives \
                 H.264 video and Opus audio"
                    .to_string(),
            ));
        };
        Ok(Negotiated {
            rtc,
            socket,
            candidate: SocketAddr::new(self.candidate_ips(candidate.ip())[0], candidate.port()),
            local_password: credentials.pass,
            answer: answer.to_sdp_string(),
            video_mid,
            audio,
        })
    }

    /// The addresses announced as candidates: the configured ones, else `local_ip`.
    fn candidate_ips(&self, local_ip: IpAddr) -> Vec<IpAddr> {
        if self.config.candidate_ips.is_empty() {
            vec![local_ip]
        } else {
            self.config.candidate_ips.clone()
        }
    }

    /// A UDP socket on a free port of the range: on the address the request came in on,
    /// or on all addresses when candidates are configured (a NAT in between).
    async fn bind_udp(&self, local_ip: IpAddr) -> Result<(UdpSocket, SocketAddr), WhipError> {
        let ip = if self.config.candidate_ips.is_empty() {
            local_ip
        } else if local_ip.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        };
        let range = self.config.udp_ports;
        let start = self.next_port.fetch_add(1, Ordering::Relaxed);
        for i in 0..range.len() {
            let port = range.first + ((start + i) % range.len()) as u16;
            match UdpSocket::bind((ip, port)).await {
                Ok(socket) => {
                    let local = socket
                        .local_addr()
                        .map_err(|e| WhipError::Unavailable(format!("udp socket: {e}")))?;
                    return Ok((socket, local));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => {
                    return Err(WhipError::Unavailable(format!(
                        "cannot bind a UDP port on {ip}: {e}"
                    )));
                }
            }
        }
        Err(WhipError::Unavailable(format!(
            "no free UDP port in ingest.whip.udp_ports ({range:?})"
        )))
    }
}

/// RFC 9725 §4.2: the offer is `application/sdp` (parameters allowed).
fn check_content_type(headers: &HeaderMap) -> Result<(), WhipError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match essence {
        Some(t) if t.eq_ignore_ascii_case("application/sdp") => Ok(()),
        other => Err(WhipError::UnsupportedMediaType(format!(
            "the offer must be sent as Content-Type: application/sdp, not {}",
            other.unwrap_or("(none)")
        ))),
    }
}

/// RFC 6750 §2.1: `Authorization: Bearer {token}`; here the token is the stream key.
fn bearer(headers: &HeaderMap) -> Result<&str, WhipError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    token.ok_or_else(|| {
        WhipError::Unauthorized(
            "send the event's stream key as Authorization: Bearer {stream_key}".to_string(),
        )
    })
}
