//! Wiring: the services of the workspace, joined in one process through the same small
//! traits they use across the network.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use floodlight_control::viewer_sessions::SessionStore;
use floodlight_control::{
    Control, EventId, IngestProtocol, LifecycleKind, LifecycleMessage, LiveStatus,
    LiveStatusSource, PublicUrls, PublishCheck, PublishPermit, PublisherStatus, RenditionStatus,
    RtspTransport as ControlRtspTransport, ShedRendition, Visibility,
};
use floodlight_ingest::{
    BoxFuture, Ingest, IngestAuthority, Protocol, PublishGrant, PublishRefusal, PublishRequest,
    PullSource, RtspTransport, SessionChange, StampedEvent, StreamHandler,
};
use floodlight_media::token::PlaybackClaims;
use floodlight_media::{PlaybackAccess, StreamSettings};
use floodlight_origin::{Origin, ViewerSessions};
use floodlight_transcoder::Transcoder;
use floodlight_transcoder::vod::VodSettings;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::archive::Archive;
use crate::config::{AssignmentMode, Config};
use crate::vod::ArchiveAssets;

/// The origin asks the viewer-session store, shared with the control plane, whether a
/// session was revoked, and reports its playlist requests as heartbeats.
struct OriginSessions(SessionStore);

impl ViewerSessions for OriginSessions {
    fn is_revoked(&self, sid: &str) -> bool {
        self.0.is_revoked(sid)
    }

    fn heartbeat(&self, claims: &PlaybackClaims) {
        self.0.heartbeat(&claims.sid);
    }
}

/// The keys the control plane signs playback tokens with (configured, or generated once
/// into the data dir), as `origin.playback_keys` takes them.
async fn control_playback_keys(config: &Config) -> anyhow::Result<Vec<String>> {
    let keys =
        floodlight_control::playback_signing_keys(&config.control.entitlement, &config.data_dir)
            .await
            .context("control.entitlement.playback_signing_keys")?;
    Ok(keys.iter().map(|k| k.expose_secret().to_string()).collect())
}

/// Ingest asks the control plane whether a stream key may publish, reports publishing
/// sessions to it, and asks it what to pull over RTSP.
pub(crate) struct StoreAuthority(Control, mpsc::UnboundedSender<(String, SessionChange)>);

impl StoreAuthority {
    /// The adapter, and the task that records session changes one after another.
    /// Unbounded: changes come at the pace publishers connect and disconnect.
    pub(crate) fn new(control: Control) -> StoreAuthority {
        let (changes, mut queue) = mpsc::unbounded_channel::<(String, SessionChange)>();
        let recorder = control.clone();
        tokio::spawn(async move {
            while let Some((event_id, change)) = queue.recv().await {
                let result = match change {
                    SessionChange::Started { protocol } => {
                        recorder
                            .publish_started(&event_id, control_protocol(protocol))
                            .await
                    }
                    SessionChange::Stopped { protocol } => {
                        recorder
                            .publish_stopped(&event_id, control_protocol(protocol))
                            .await
                    }
                };
                if let Err(error) = result {
                    tracing::warn!(%event_id, %error, "could not record a publishing change");
                }
            }
        });
        StoreAuthority(control, changes)
    }
}

fn control_protocol(protocol: Protocol) -> IngestProtocol {
    match protocol {
        Protocol::Rtmp => IngestProtocol::Rtmp,
        Protocol::Srt => IngestProtocol::Srt,
        Protocol::Whip => IngestProtocol::Whip,
        Protocol::Rtsp => IngestProtocol::Rtsp,
    }
}

fn stream_settings(permit: &PublishPermit) -> StreamSettings {
    StreamSettings {
        access: match permit.visibility {
            Visibility::Public => PlaybackAccess::Public,
            Visibility::Entitled => PlaybackAccess::Token,
        },
        part_target_ms: permit.part_target_ms,
        dvr_window_secs: permit.dvr_window_secs,
        ladder: permit.ladder.clone(),
    }
}

impl IngestAuthority for StoreAuthority {
    fn authorize<'a>(
        &'a self,
        request: PublishRequest<'a>,
    ) -> BoxFuture<'a, Result<PublishGrant, PublishRefusal>> {
        Box::pin(async move {
            let check = PublishCheck {
                stream_key: request.stream_key,
                event_id: request.event_id,
                protocol: control_protocol(request.protocol),
                remote_ip: request.remote_addr.ip(),
            };
            let permit = self.0.authorize_publish(check).await?;
            Ok(PublishGrant {
                event_id: permit.event_id.as_str().to_string(),
                settings: stream_settings(&permit),
                backup_ingest: permit.backup_ingest,
                srt_passphrase: permit.srt_passphrase,
                srt_latency_ms: permit.srt_latency_ms,
            })
        })
    }

    /// Recorded in the background, in arrival order (one task per change could reorder
    /// a quick stop and start).
    fn session_changed(&self, event_id: &str, change: SessionChange) {
        let _ = self.1.send((event_id.to_string(), change));
    }

    fn pull_sources(&self) -> BoxFuture<'_, Result<Vec<PullSource>, PublishRefusal>> {
        Box::pin(async move {
            let sources = self
                .0
                .pull_sources()
                .await
                .map_err(|e| PublishRefusal::Unavailable(e.to_string()))?;
            Ok(sources
                .into_iter()
                .map(|source| PullSource {
                    event_id: source.event_id.as_str().to_string(),
                    settings: stream_settings(&source.permit),
                    url: source.url,
                    transport: match source.transport {
                        ControlRtspTransport::Udp => RtspTransport::Udp,
                        ControlRtspTransport::Tcp => RtspTransport::Tcp,
                    },
                })
                .collect())
        })
    }
}

/// Ingest hands each publisher session to the transcoder in this process.
struct LocalTranscoder(Transcoder);

impl StreamHandler for LocalTranscoder {
    fn begin_session(
        &self,
        event_id: &str,
        settings: &StreamSettings,
    ) -> mpsc::Sender<StampedEvent> {
        self.0.begin_session(event_id, settings, None).events
    }
}

/// Ends the publishing of events the control plane closes: cancelled or archived, or
/// ended at their scheduled end (a publisher still sending is cut, as the schedule says).
async fn stop_publishers_of_closed_events(
    mut lifecycle: broadcast::Receiver<LifecycleMessage>,
    ingest: Ingest,
) {
    loop {
        let message = match lifecycle.recv().await {
            Ok(message) => message,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "lifecycle messages missed by the publisher stopper");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let reason = match message.kind {
            LifecycleKind::EventCancelled => "the event was cancelled",
            LifecycleKind::EventArchived => "the event was archived",
            LifecycleKind::EventEnded => "the event has ended",
            _ => continue,
        };
        ingest.stop_publishing(message.event_id.as_str(), reason);
    }
}

/// The control plane's view of what is on air: ingest sessions plus origin renditions.
pub(crate) struct LiveView {
    pub(crate) ingest: OnceLock<Ingest>,
    /// `None` in `floodlight ingest`, which has no origin.
    pub(crate) origin: Option<Origin>,
}

impl LiveStatusSource for LiveView {
    fn live_status(&self, event_id: &EventId) -> LiveStatus {
        let session = self.ingest.get().and_then(|i| i.session(event_id.as_str()));
        let stream = self
            .origin
            .as_ref()
            .and_then(|o| o.stream_status(event_id.as_str()))
            .filter(|s| !s.ended);
        let mut status = LiveStatus::default();
        if let Some(session) = session {
            status.publishing = true;
            status.since =
                Some(UNIX_EPOCH + Duration::from_millis(session.started_at_ms.max(0) as u64));
            status.protocol = Some(control_protocol(session.protocol));
            status.ingest_bitrate_bps = Some(session.bitrate_bps);
        }
        if let Some(ingest) = self.ingest.get() {
            status.publishers = ingest
                .publishers(event_id.as_str())
                .into_iter()
                .map(|p| PublisherStatus {
                    protocol: control_protocol(p.protocol),
                    live: p.live,
                    since: Some(UNIX_EPOCH + Duration::from_millis(p.started_at_ms.max(0) as u64)),
                    bitrate_bps: p.bitrate_bps,
                    frames: p.frames,
                    dropped_frames: p.dropped_frames,
                    keyframe_interval_ms: p.keyframe_interval_ms,
                    idle_ms: p.idle_ms,
                })
                .collect();
        }
        if let Some(stream) = stream {
            status.renditions = stream
                .renditions
                .into_iter()
                .map(|r| RenditionStatus {
                    name: r.name,
                    codecs: r.codecs,
                    width: r.width,
                    height: r.height,
                    bandwidth_bps: r.peak_bitrate_bps.or(r.bitrate_bps).unwrap_or(0),
                })
                .collect();
            status.shed_renditions = stream
                .shed_renditions
                .into_iter()
                .map(|s| ShedRendition {
                    name: s.name,
                    reason: s.reason,
                    at: Some(UNIX_EPOCH + Duration::from_millis(s.at_ms.max(0) as u64)),
                })
                .collect();
            status.archive = stream.archive.map(|a| crate::archive::health(&a));
        }
        status
    }
}

/// The publisher-facing listeners (RTMP, SRT, WHIP), bound before anything starts so a
/// port in use stops start-up with the key to change.
pub(crate) struct IngestListeners {
    pub(crate) rtmp: TcpListener,
    pub(crate) whip: TcpListener,
    pub(crate) srt: UdpSocket,
}

impl IngestListeners {
    pub(crate) async fn bind(config: &Config) -> anyhow::Result<Self> {
        let rtmp = bind("ingest.rtmp.listen", config.ingest.rtmp.listen).await?;
        let whip = bind("ingest.whip.listen", config.ingest.whip.listen).await?;
        let srt = floodlight_ingest::bind_srt(&config.ingest.srt)
            .await
            .with_context(|| {
                format!(
                    "ingest.srt.listen: cannot listen on {} (UDP)",
                    config.ingest.srt.listen
                )
            })?;
        Ok(IngestListeners { rtmp, whip, srt })
    }

    /// One task in `tasks` per listener, and one for the RTSP puller; all stop on `stop`.
    /// The WHIP listener also serves /metrics from `render`.
    pub(crate) fn spawn(
        self,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        ingest: Ingest,
        render: impl Fn() -> String + Send + Sync + 'static,
        stop: &watch::Receiver<bool>,
    ) {
        let (s, rtmp_ingest) = (stop.clone(), ingest.clone());
        tasks.spawn(async move {
            floodlight_ingest::serve_rtmp(rtmp_ingest, self.rtmp, signalled(s)).await;
            Ok(())
        });
        let (s, srt_ingest) = (stop.clone(), ingest.clone());
        tasks.spawn(async move {
            floodlight_ingest::serve_srt(srt_ingest, self.srt, signalled(s)).await;
            Ok(())
        });
        let (s, rtsp_ingest) = (stop.clone(), ingest.clone());
        tasks.spawn(async move {
            floodlight_ingest::pull_rtsp(rtsp_ingest, signalled(s)).await;
            Ok(())
        });
        let s = stop.clone();
        tasks.spawn(async move {
            floodlight_ingest::serve_whip(ingest, self.whip, render, signalled(s))
                .await
                .context("WHIP")
        });
    }
}

pub(crate) async fn bind(key: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

pub(crate) async fn signalled(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The URL a local client uses to reach a listener bound to `addr`.
fn local_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    format!("http://{ip}:{}", addr.port())
}

pub(crate) async fn up(mut config: Config, metrics: PrometheusHandle) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data_dir: cannot create {}", config.data_dir.display()))?;
    config.ingest.rtsp.validate()?;
    config.ingest.whip.validate()?;
    let render = move || metrics.render();

    let origin_listener = bind("origin.listen", config.origin.listen).await?;
    let control_listener = bind("control.listen", config.control.listen).await?;
    let ingest_listeners = IngestListeners::bind(&config).await?;
    let origin_addr = origin_listener.local_addr()?;
    let rtmp_addr = ingest_listeners.rtmp.local_addr()?;
    let control_addr = control_listener.local_addr()?;

    if config.transcoder.origins.is_empty() {
        config.transcoder.origins = vec![local_url(origin_addr)];
    }
    // The push API is not for the public: in one process the origin and its transcoder
    // share a token, the configured one or a fresh random one.
    let token = config
        .origin
        .push_token
        .clone()
        .or_else(|| config.transcoder.push_token.clone())
        .unwrap_or_else(|| {
            let bytes: [u8; 32] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        });
    config.origin.push_token = Some(token.clone());
    config.transcoder.push_token = Some(token);
    // Playback tokens: the origin verifies with the keys the control plane signs with,
    // unless origin.playback_keys names its own; both share one viewer-session store
    // (in-process here, unless sessions.redis_url is set).
    if config.origin.playback_keys.is_empty() {
        config.origin.playback_keys = control_playback_keys(&config).await?;
    }
    let sessions = SessionStore::open(&config.sessions)
        .await
        .context("sessions.redis_url: cannot open the viewer-session store")?;
    let archive = Archive::open(&config)?;
    let origin = Origin::with_viewer_sessions(
        config.origin.clone(),
        render.clone(),
        Arc::new(OriginSessions(sessions.clone())),
    )
    .with_archive(archive.writer())
    .with_archive_store(archive.store());
    let whip_render = render.clone();
    // `[assignment] mode = "remote"`: streams go to `floodlight transcoder` processes.
    let handler: Arc<dyn StreamHandler> = match config.assignment.mode {
        AssignmentMode::Local => {
            Arc::new(LocalTranscoder(Transcoder::new(config.transcoder.clone())?))
        }
        AssignmentMode::Remote => Arc::new(crate::assignment::remote_transcoders(&config).await?),
    };
    let live = Arc::new(LiveView {
        ingest: OnceLock::new(),
        origin: Some(origin.clone()),
    });
    let urls = PublicUrls::new(&config.public_host, rtmp_addr.port(), origin_addr.port());
    let control = Control::with_sessions(
        config.control.clone(),
        &config.data_dir,
        urls.clone(),
        live.clone(),
        sessions,
        render,
    )
    .await
    .context("starting the control plane")?;
    // VOD asset jobs read and write the archive's store; without one, POST /v1/assets
    // answers 503 and says why.
    let control = match archive.store() {
        Some(store) => control.with_assets(Arc::new(ArchiveAssets::new(
            store,
            VodSettings::from_config(&config.transcoder),
        ))),
        None => control,
    };
    let admin_key = control.bootstrap_admin_key();
    let ingest = Ingest::new(
        config.ingest.clone(),
        Arc::new(StoreAuthority::new(control.clone())),
        handler,
    );
    let _ = live.ingest.set(ingest.clone());
    tokio::spawn(stop_publishers_of_closed_events(
        control.subscribe(),
        ingest.clone(),
    ));

    let stop = shutdown_signal();
    // One task per listener; the process ends when the first one fails or all finish.
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let s = stop.clone();
    tasks.spawn(async move {
        floodlight_origin::run(origin_listener, origin, signalled(s))
            .await
            .context("origin")
    });
    let s = stop.clone();
    tasks.spawn(async move {
        floodlight_control::run(control_listener, control, signalled(s))
            .await
            .context("control API")
    });
    ingest_listeners.spawn(&mut tasks, ingest, whip_render, &stop);

    print_next_steps(&config, &urls, control_addr, admin_key);
    while let Some(result) = tasks.join_next().await {
        result.context("a service task panicked")??;
    }
    archive.flush().await;
    Ok(())
}

pub(crate) async fn origin_only(config: Config, metrics: PrometheusHandle) -> anyhow::Result<()> {
    if config.origin.push_token.is_none() {
        anyhow::bail!(
            "origin.push_token: required when the origin runs alone, since transcoders push to \
             it over the network; set it (FLOODLIGHT_ORIGIN__PUSH_TOKEN) and give the same \
             value to the transcoders (transcoder.push_token)"
        );
    }
    // Revocations and heartbeats reach a standalone origin only through Redis.
    let sessions = match &config.sessions.redis_url {
        Some(_) => Some(
            SessionStore::open(&config.sessions)
                .await
                .context("sessions.redis_url: cannot open the viewer-session store")?,
        ),
        None => {
            if !config.origin.playback_keys.is_empty() {
                warn!(
                    "sessions.redis_url is unset: this origin checks playback tokens but sees no                      session revocation and sends no heartbeat (concurrency limits count only                      token issues)"
                );
            }
            None
        }
    };
    let listener = bind("origin.listen", config.origin.listen).await?;
    info!(addr = %listener.local_addr()?, "origin listening");
    let archive = Archive::open(&config)?;
    let render = move || metrics.render();
    let origin = match sessions {
        Some(sessions) => {
            Origin::with_viewer_sessions(config.origin, render, Arc::new(OriginSessions(sessions)))
        }
        None => Origin::new(config.origin, render),
    };
    floodlight_origin::run(
        listener,
        origin
            .with_archive(archive.writer())
            .with_archive_store(archive.store()),
        signalled(shutdown_signal()),
    )
    .await?;
    archive.flush().await;
    Ok(())
}

/// `admin_key`: the admin API key generated for a fresh database, printed this once.
fn print_next_steps(
    config: &Config,
    urls: &PublicUrls,
    control_addr: SocketAddr,
    admin_key: Option<String>,
) {
    let api = format!("http://{}:{}", config.public_host, control_addr.port());
    let key_note = match admin_key {
        Some(key) => format!(
            "\nAdmin API key (shown once, stored only hashed; keep it):\
             \n  export FLOODLIGHT_API_KEY={key}\n"
        ),
        None => "\nAPI calls need an API key: export FLOODLIGHT_API_KEY=<key> (the admin key \
                 printed at first start, FLOODLIGHT_ADMIN_KEY, or one from POST /v1/api-keys).\n"
            .to_string(),
    };
    println!(
        "\nFloodlight is up (data in {data}).\n\
         {key_note}\
         \n  control API  {api}/v1 (OpenAPI: {api}/v1/openapi.json, browse: {api}/v1/docs)\
         \n  RTMP ingest  {rtmp}\
         \n  SRT ingest   srt://{host}:{srt_port}?streamid=<stream_key>\
         \n  WHIP ingest  http://{host}:{whip_port}/whip/<event_id> (Authorization: Bearer <stream_key>)\
         \n  LL-HLS       {hls}/{{event_id}}/master.m3u8\n\
         \n1. Create an event (the answer shows its stream key once):\
         \n     curl -s -X POST {api}/v1/events -H \"Authorization: Bearer $FLOODLIGHT_API_KEY\" \\\
         \n       -H 'content-type: application/json' -d '{{\"title\":\"My event\"}}'\
         \n2. Publish to it:\
         \n     OBS: Settings → Stream → Service \"Custom…\", Server {rtmp}, Stream Key <stream_key>;\
         \n          Output → Keyframe Interval 2 s.\
         \n     ffmpeg: ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440 \\\
         \n               -c:v libx264 -preset veryfast -g 60 -c:a aac -f flv {rtmp}/<stream_key>\
         \n3. Watch it:\
         \n     ffplay {hls}/<event_id>/master.m3u8\
         \n     or in Safari / any hls.js player (lowLatencyMode) with the same URL.\n",
        data = config.data_dir.display(),
        host = config.public_host,
        srt_port = config.ingest.srt.listen.port(),
        whip_port = config.ingest.whip.listen.port(),
        rtmp = urls.rtmp_base,
        hls = urls.hls_base,
    );
}
