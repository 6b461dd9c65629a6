//! Wiring: the services of the workspace, joined in one process through the same small
//! traits they use across the network.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use floodlight_control::{
    Control, EventId, IngestProtocol, LiveStatus, LiveStatusSource, PublicUrls, RenditionStatus,
    Store,
};
use floodlight_ingest::{
    BoxFuture, Ingest, IngestAuthority, Protocol, PublishGrant, PublishRefusal, PublishRequest,
    PullSource, SessionChange, StampedEvent, StreamHandler,
};
use floodlight_media::StreamSettings;
use floodlight_origin::Origin;
use floodlight_transcoder::Transcoder;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::info;

use crate::config::Config;

/// Ingest asks the control plane's store whether a stream key may publish.
struct StoreAuthority(Store);

impl IngestAuthority for StoreAuthority {
    fn authorize<'a>(
        &'a self,
        request: PublishRequest<'a>,
    ) -> BoxFuture<'a, Result<PublishGrant, PublishRefusal>> {
        Box::pin(async move {
            let event_id = self
                .0
                .authorize_stream_key(request.stream_key)
                .await
                .map_err(|e| PublishRefusal::Unavailable(e.to_string()))?
                .ok_or(PublishRefusal::UnknownKey)?
                .into_string();
            if request.event_id.is_some_and(|named| named != event_id) {
                return Err(PublishRefusal::UnknownKey);
            }
            Ok(PublishGrant {
                event_id,
                ..PublishGrant::default()
            })
        })
    }

    fn session_changed(&self, _event_id: &str, _change: SessionChange) {}

    fn pull_sources(&self) -> BoxFuture<'_, Result<Vec<PullSource>, PublishRefusal>> {
        Box::pin(async { Ok(Vec::new()) })
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
        self.0.begin_session(event_id, settings)
    }
}

/// The control plane's view of what is on air: ingest sessions plus origin renditions.
struct LiveView {
    ingest: OnceLock<Ingest>,
    origin: Origin,
}

impl LiveStatusSource for LiveView {
    fn live_status(&self, event_id: &EventId) -> LiveStatus {
        let session = self.ingest.get().and_then(|i| i.session(event_id.as_str()));
        let stream = self
            .origin
            .stream_status(event_id.as_str())
            .filter(|s| !s.ended);
        let mut status = LiveStatus::default();
        if let Some(session) = session {
            status.publishing = true;
            status.since =
                Some(UNIX_EPOCH + Duration::from_millis(session.started_at_ms.max(0) as u64));
            status.protocol = Some(match session.protocol {
                Protocol::Rtmp => IngestProtocol::Rtmp,
                Protocol::Srt => IngestProtocol::Srt,
                Protocol::Whip => IngestProtocol::Whip,
                Protocol::Rtsp => IngestProtocol::Rtsp,
            });
            status.ingest_bitrate_bps = Some(session.bitrate_bps);
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
        }
        status
    }
}

async fn bind(key: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}

/// Resolves on Ctrl-C or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
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

async fn signalled(mut rx: watch::Receiver<bool>) {
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
    let render = move || metrics.render();

    let origin_listener = bind("origin.listen", config.origin.listen).await?;
    let control_listener = bind("control.listen", config.control.listen).await?;
    let rtmp_listener = bind("ingest.rtmp.listen", config.ingest.rtmp.listen).await?;
    let origin_addr = origin_listener.local_addr()?;
    let rtmp_addr = rtmp_listener.local_addr()?;
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
    let origin = Origin::new(config.origin.clone(), render.clone());
    let transcoder = Transcoder::new(config.transcoder.clone())?;
    let live = Arc::new(LiveView {
        ingest: OnceLock::new(),
        origin: origin.clone(),
    });
    let urls = PublicUrls::new(&config.public_host, rtmp_addr.port(), origin_addr.port());
    let control = Control::new(
        config.control.clone(),
        &config.data_dir,
        urls.clone(),
        live.clone(),
        render,
    )
    .await
    .context("starting the control plane")?;
    let ingest = Ingest::new(
        config.ingest.clone(),
        Arc::new(StoreAuthority(control.store().clone())),
        Arc::new(LocalTranscoder(transcoder)),
    );
    let _ = live.ingest.set(ingest.clone());

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
    let s = stop.clone();
    tasks.spawn(async move {
        floodlight_ingest::serve_rtmp(ingest, rtmp_listener, signalled(s)).await;
        Ok(())
    });

    print_next_steps(&config, &urls, control_addr);
    while let Some(result) = tasks.join_next().await {
        result.context("a service task panicked")??;
    }
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
    let listener = bind("origin.listen", config.origin.listen).await?;
    info!(addr = %listener.local_addr()?, "origin listening");
    let origin = Origin::new(config.origin, move || metrics.render());
    floodlight_origin::run(listener, origin, signalled(shutdown_signal())).await?;
    Ok(())
}

fn print_next_steps(config: &Config, urls: &PublicUrls, control_addr: SocketAddr) {
    let api = format!("http://{}:{}", config.public_host, control_addr.port());
    println!(
        "\nFloodlight is up (data in {data}).\n\
         \n  control API  {api}/v1\
         \n  RTMP ingest  {rtmp}\
         \n  LL-HLS       {hls}/{{event_id}}/master.m3u8\n\
         \n1. Create an event (the answer shows its stream key once):\
         \n     curl -s -X POST {api}/v1/events -H 'content-type: application/json' -d '{{\"title\":\"My event\"}}'\
         \n2. Publish to it:\
         \n     OBS: Settings → Stream → Service \"Custom…\", Server {rtmp}, Stream Key <stream_key>;\
         \n          Output → Keyframe Interval 2 s.\
         \n     ffmpeg: ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440 \\\
         \n               -c:v libx264 -preset veryfast -g 60 -c:a aac -f flv {rtmp}/<stream_key>\
         \n3. Watch it:\
         \n     ffplay {hls}/<event_id>/master.m3u8\
         \n     or in Safari / any hls.js player (lowLatencyMode) with the same URL.\n",
        data = config.data_dir.display(),
        rtmp = urls.rtmp_base,
        hls = urls.hls_base,
    );
}
