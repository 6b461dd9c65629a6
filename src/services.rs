//! `floodlight transcoder` and `floodlight ingest` as processes of their own, and the
//! remote transcoders `floodlight up` hands streams to with `[assignment] mode = "remote"`.
//! Ingest reaches transcoders over the media transport (`floodlight_media::transport`)
//! and finds them in the Redis registry (`crate::assignment`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use floodlight_control::viewer_sessions::SessionStore;
use floodlight_control::{Control, PublicUrls};
use floodlight_ingest::Ingest;
use floodlight_transcoder::Transcoder;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::assignment::{TranscoderEntry, registry, remote_transcoders};
use crate::config::Config;
use crate::up::{IngestListeners, LiveView, StoreAuthority, bind, shutdown_signal, signalled};

/// The address ingest reaches `listen` at: `advertise`, or `listen` with 127.0.0.1 for
/// an unspecified IP.
fn advertised(config: &Config, listen: SocketAddr) -> String {
    match &config.transcoder.advertise {
        Some(addr) => addr.clone(),
        None if listen.ip().is_unspecified() => format!("127.0.0.1:{}", listen.port()),
        None => listen.to_string(),
    }
}

/// /metrics, /healthz, and /readyz answering 200 while `ready` holds.
fn health_router(metrics: PrometheusHandle, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not registered")
                }
            }),
        )
}

pub(crate) async fn transcoder(config: Config, metrics: PrometheusHandle) -> anyhow::Result<()> {
    if config.transcoder.origins.is_empty() {
        bail!(
            "transcoder.origins: `floodlight transcoder` pushes parts to origins over HTTP; \
             list their base URLs (FLOODLIGHT_TRANSCODER__ORIGINS='[\"http://origin:8080\"]')"
        );
    }
    if config.transcoder.push_token.is_none() {
        bail!(
            "transcoder.push_token: required when the transcoder runs alone; give it the \
             origins' origin.push_token (FLOODLIGHT_TRANSCODER__PUSH_TOKEN)"
        );
    }
    let registry = registry(&config, "`floodlight transcoder`").await?;
    let transcoder = Transcoder::new(config.transcoder.clone())?;
    let listener = bind("transcoder.listen", config.transcoder.listen).await?;
    let http = bind("transcoder.http_listen", config.transcoder.http_listen).await?;
    let listen = listener.local_addr()?;
    let entry = TranscoderEntry {
        id: {
            let bytes: [u8; 8] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        },
        addr: advertised(&config, listen),
        capacity: config.transcoder.capacity_rungs,
        load: 0,
        streams: 0,
    };
    info!(id = %entry.id, addr = %entry.addr, http = %http.local_addr()?, "transcoder listening");
    let ready = Arc::new(AtomicBool::new(false));
    let stop = shutdown_signal();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();

    let heartbeat = Duration::from_millis(config.assignment.heartbeat_ms);
    let (beat_registry, beat_ready, beat_transcoder, mut beat_entry) = (
        registry.clone(),
        ready.clone(),
        transcoder.clone(),
        entry.clone(),
    );
    let s = stop.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(heartbeat);
        let mut failing = false;
        let stopped = signalled(s);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            // At least one rung per stream: a stream whose ladder is not planned yet, or
            // passthrough only, still costs its pipeline (the transport refuses new
            // streams on the same measure).
            let load = beat_transcoder.load();
            beat_entry.load = load.cost as u32;
            beat_entry.streams = load.streams as u32;
            metrics::gauge!("floodlight_transcoder_load").set(beat_entry.load as f64);
            metrics::gauge!("floodlight_transcoder_capacity").set(beat_entry.capacity as f64);
            match beat_registry.heartbeat(&beat_entry).await {
                Ok(()) => {
                    if failing {
                        info!("registered again");
                    }
                    failing = false;
                    beat_ready.store(true, Ordering::SeqCst);
                }
                Err(error) => {
                    if !failing {
                        warn!(%error, "cannot renew the registration in Redis");
                    }
                    failing = true;
                    beat_ready.store(false, Ordering::SeqCst);
                }
            }
        }
        // Leave at once rather than be picked until the entry expires.
        beat_ready.store(false, Ordering::SeqCst);
        if let Err(error) = beat_registry.deregister(&beat_entry.id).await {
            warn!(%error, "cannot deregister from Redis");
        }
        Ok(())
    });
    let s = stop.clone();
    let router = health_router(metrics, ready);
    tasks.spawn(async move {
        axum::serve(http, router)
            .with_graceful_shutdown(signalled(s))
            .await
            .context("transcoder HTTP")
    });
    let s = stop.clone();
    let transport_config = config.transcoder.clone();
    tasks.spawn(async move {
        floodlight_transcoder::serve_transport(
            transcoder,
            listener,
            &transport_config,
            signalled(s),
        )
        .await;
        Ok(())
    });
    while let Some(result) = tasks.join_next().await {
        result.context("a transcoder task panicked")??;
    }
    Ok(())
}

pub(crate) async fn ingest(config: Config, metrics: PrometheusHandle) -> anyhow::Result<()> {
    config.ingest.rtsp.validate()?;
    config.ingest.whip.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data_dir: cannot create {}", config.data_dir.display()))?;
    let handler = remote_transcoders(&config).await?;
    let render = move || metrics.render();
    let listeners = IngestListeners::bind(&config).await?;
    // Stream keys are checked against the control plane's store in this process
    // (control.database_url: PostgreSQL, shared with the control plane, when
    // distributed). Its lifecycle bus is this process's own: that a cancel in the control
    // API cuts the publisher here needs the bus across processes (Kafka).
    let sessions = SessionStore::open(&config.sessions)
        .await
        .context("sessions.redis_url: cannot open the viewer-session store")?;
    let live = Arc::new(LiveView {
        ingest: OnceLock::new(),
        origin: None,
    });
    let urls = PublicUrls::new(
        &config.public_host,
        listeners.rtmp.local_addr()?.port(),
        config.origin.listen.port(),
    );
    let control = Control::with_sessions(
        config.control.clone(),
        &config.data_dir,
        urls,
        live.clone(),
        sessions,
        render.clone(),
    )
    .await
    .context("opening the control plane's store")?;
    let ingest = Ingest::new(
        config.ingest.clone(),
        Arc::new(StoreAuthority::new(control)),
        Arc::new(handler),
    );
    let _ = live.ingest.set(ingest.clone());
    info!(
        rtmp = %listeners.rtmp.local_addr()?,
        http = %listeners.whip.local_addr()?,
        "ingest listening (/metrics and /healthz on the WHIP listener)"
    );

    let stop = shutdown_signal();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    listeners.spawn(&mut tasks, ingest, render, &stop);
    while let Some(result) = tasks.join_next().await {
        result.context("an ingest task panicked")??;
    }
    Ok(())
}
