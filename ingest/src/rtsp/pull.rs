//! One source's puller: connect, play, hand frames to the stream's transcoder, and when the
//! source drops, reconnect with exponential backoff. Each connection is one publisher
//! session toward the `StreamHandler` (`Ended` when it drops), so a reconnect within the
//! transcoder's grace period continues the stream with a discontinuity.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use bytes::Bytes;
use floodlight_media::StreamEvent;
use futures::{FutureExt, StreamExt};
use retina::client::{
    Demuxed, InitialTimestampPolicy, PlayOptions, Session, SessionOptions, SetupOptions, Transport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::to_stream::{Converted, RtpMediaError, RtpTime, RtpToStream};
use super::{SourceUrl, SourceUrlError};
use crate::neighbours::{Protocol, PublishGrant, PullSource, RtspTransport};
use crate::publisher::{Ingest, PublishStopped, Publisher, SlotTaken};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum PullError {
    #[error("cannot resolve the source host: {0}")]
    Resolve(std::io::Error),
    #[error("connect, DESCRIBE, SETUP and PLAY not done within {0} s")]
    ConnectTimeout(u64),
    /// retina's error text, on one line (it spreads connection and packet context over
    /// several).
    #[error("rtsp: {0}")]
    Rtsp(String),
    #[error("the source offers no H.264 video or AAC audio (it offers: {0})")]
    NoUsableStream(String),
    #[error("no media for {0} s")]
    Idle(u64),
    #[error("the source ended the stream")]
    SourceEnded,
    #[error("{track} frame at {rtp_timestamp}: {source}")]
    Media {
        track: &'static str,
        rtp_timestamp: i64,
        source: RtpMediaError,
    },
    #[error("internal error (panic) while pulling")]
    Panicked,
    #[error("{0}")]
    SlotTaken(SlotTaken),
    #[error("{0}")]
    PublishStopped(#[from] PublishStopped),
}

impl PullError {
    /// The `reason` label of `floodlight_ingest_rtsp_pull_failures_total`.
    fn reason(&self) -> &'static str {
        match self {
            PullError::Resolve(_) => "resolve",
            PullError::ConnectTimeout(_) => "connect_timeout",
            PullError::Rtsp(_) => "rtsp",
            PullError::NoUsableStream(_) => "unsupported_codec",
            PullError::Idle(_) => "idle",
            PullError::SourceEnded => "source_ended",
            PullError::Media { .. } => "malformed_media",
            PullError::Panicked => "panic",
            PullError::SlotTaken(_) => "already_publishing",
            PullError::PublishStopped(_) => "stopped",
        }
    }
}

impl From<retina::Error> for PullError {
    fn from(e: retina::Error) -> Self {
        let text = e.to_string();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        PullError::Rtsp(lines.join("; "))
    }
}

/// Pulls `source` until `stop` turns true, reconnecting whenever it drops. `previous` is
/// the pull this one replaces (its source changed): it must have let go of the event's
/// publishing slot first.
pub(super) async fn run(
    ingest: Ingest,
    source: PullSource,
    mut stop: watch::Receiver<bool>,
    previous: Option<JoinHandle<()>>,
) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    let url = match SourceUrl::parse(&source.url) {
        Ok(url) => url,
        Err(e) => {
            pull_failed("bad_url");
            return bad_url(e);
        }
    };
    tracing::Span::current().record("source", url.redacted.as_str());
    let config = ingest.config.rtsp.clone();
    let mut backoff = config.reconnect_initial();
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let mut connection = Connection::new(&ingest, &source, &url);
        // A panic in the RTSP client or our conversion (a bug, met through a source's
        // input) ends this connection like any other error; the pull goes on.
        let pull = AssertUnwindSafe(connection.pull()).catch_unwind();
        let dropped = tokio::select! {
            result = pull => Some(match result {
                Ok(Err(error)) => error,
                Err(_) => PullError::Panicked,
            }),
            _ = stop.wait_for(|stop| *stop) => None,
        };
        let flowed = connection.frames > 0;
        connection.end().await;
        let Some(error) = dropped.filter(|_| !*stop.borrow()) else {
            info!("rtsp pull stopped");
            return;
        };
        pull_failed(error.reason());
        if flowed {
            backoff = config.reconnect_initial();
        }
        warn!(
            attempt = attempts,
            error = %error,
            retry_in_ms = backoff.as_millis() as u64,
            "rtsp pull dropped"
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|stop| *stop) => {
                info!("rtsp pull stopped");
                return;
            }
        }
        metrics::counter!("floodlight_ingest_rtsp_reconnects_total").increment(1);
        backoff = next_backoff(backoff, config.reconnect_max());
    }
}

/// A URL that cannot be pulled stays so until the control plane lists another one.
fn bad_url(error: SourceUrlError) {
    warn!(error = %error, "rtsp source URL cannot be pulled; waiting for the event's source to change");
}

fn pull_failed(reason: &'static str) {
    metrics::counter!("floodlight_ingest_rtsp_pull_failures_total", "reason" => reason)
        .increment(1);
}

/// The streams of the presentation this pull plays, by retina stream index.
struct Selected {
    video: Option<usize>,
    audio: Option<usize>,
}

/// One connection to the source: one publisher session of the event, from PLAY to
/// [`Publisher::end`].
struct Connection<'a> {
    ingest: &'a Ingest,
    source: &'a PullSource,
    url: &'a SourceUrl,
    publisher: Option<Publisher>,
    /// Frames handed on over this connection.
    frames: u64,
}

impl<'a> Connection<'a> {
    fn new(ingest: &'a Ingest, source: &'a PullSource, url: &'a SourceUrl) -> Self {
        Connection {
            ingest,
            source,
            url,
            publisher: None,
            frames: 0,
        }
    }

    /// Plays the source until it fails: a pull only ends with an error (or a stop).
    async fn pull(&mut self) -> Result<Infallible, PullError> {
        let config = &self.ingest.config.rtsp;
        let started = Instant::now();
        let (peer, mut demuxed, selected) =
            tokio::time::timeout(config.connect_timeout(), self.connect())
                .await
                .map_err(|_| PullError::ConnectTimeout(config.connect_timeout_secs))??;
        metrics::counter!("floodlight_ingest_connections_total", "protocol" => "rtsp").increment(1);
        // The control plane listing the source is the authorization: there is no key.
        let grant = PublishGrant {
            event_id: self.source.event_id.clone(),
            settings: self.source.settings.clone(),
            ..PublishGrant::default()
        };
        let publisher = self
            .ingest
            .start_publish(&grant, Protocol::Rtsp, peer)
            .map_err(PullError::SlotTaken)?;
        let publisher = self.publisher.insert(publisher);
        info!(
            transport = ?self.source.transport,
            video = selected.video.is_some(),
            audio = selected.audio.is_some(),
            connect_ms = started.elapsed().as_millis() as u64,
            "rtsp pull playing"
        );

        let mut conv = RtpToStream::new(selected.video.is_some());
        let mut out = Converted::default();
        // Parameters from the SDP (sprop-parameter-sets, AAC config), when it has them.
        for i in [selected.video, selected.audio].into_iter().flatten() {
            parameters(&demuxed, i, &mut conv, &mut out)?;
        }
        let lost_packets = metrics::counter!("floodlight_ingest_rtsp_lost_packets_total");
        let mut deadline = Instant::now() + config.read_timeout();
        loop {
            publisher.record_dropped(out.dropped);
            for event in std::mem::take(&mut out.events) {
                match event {
                    StreamEvent::Tracks(tracks) => publisher.send_tracks(tracks).await?,
                    StreamEvent::Frame(frame) => {
                        self.frames += 1;
                        publisher.send_frame(frame).await?
                    }
                    // The converter never ends a session: `Publisher::end` does.
                    StreamEvent::Ended => {}
                }
            }
            out.dropped = 0;
            let item = tokio::time::timeout_at(deadline, demuxed.next())
                .await
                .map_err(|_| PullError::Idle(config.read_timeout_secs))?;
            let item = match item {
                None => return Err(PullError::SourceEnded),
                Some(item) => item?,
            };
            let converted = match item {
                CodecItem::VideoFrame(frame) if Some(frame.stream_id()) == selected.video => {
                    if frame.has_new_parameters() {
                        parameters(&demuxed, frame.stream_id(), &mut conv, &mut out)?;
                    }
                    publisher.record_bytes(frame.data().len());
                    lost_packets.increment(u64::from(frame.loss()));
                    let time = frame.timestamp();
                    let keyframe = frame.is_random_access_point();
                    conv.video(rtp_time(time), keyframe, Bytes::from(frame.into_data()))
                        .map_err(|source| PullError::Media {
                            track: "video",
                            rtp_timestamp: time.timestamp(),
                            source,
                        })?
                }
                CodecItem::AudioFrame(frame) if Some(frame.stream_id()) == selected.audio => {
                    publisher.record_bytes(frame.data().len());
                    lost_packets.increment(u64::from(frame.loss()));
                    let data = Bytes::copy_from_slice(frame.data());
                    conv.audio(rtp_time(frame.timestamp()), data)
                }
                // RTCP sender reports, and frames of streams not set up (none are).
                _ => continue,
            };
            deadline = Instant::now() + config.read_timeout();
            merge(&mut out, converted);
        }
    }

    /// Resolves the source, then DESCRIBE, SETUP of the H.264 and AAC streams, PLAY.
    async fn connect(&self) -> Result<(SocketAddr, Demuxed, Selected), PullError> {
        let (host, port) = self.url.host_port();
        let peer: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(PullError::Resolve)?
            .next()
            .ok_or_else(|| {
                PullError::Resolve(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address",
                ))
            })?;
        let options = SessionOptions::default()
            .creds(self.url.credentials.clone())
            .user_agent(concat!("floodlight/", env!("CARGO_PKG_VERSION")).to_string());
        let mut session = Session::describe(self.url.url.clone(), options).await?;
        let selected = select_streams(session.streams())?;
        let transport = match self.source.transport {
            RtspTransport::Tcp => Transport::Tcp(Default::default()),
            RtspTransport::Udp => Transport::Udp(Default::default()),
        };
        for i in [selected.video, selected.audio].into_iter().flatten() {
            let setup = SetupOptions::default()
                .transport(transport.clone())
                .frame_format(FrameFormat::MP4);
            session.setup(i, setup).await?;
        }
        // Cameras that get `RTP-Info` wrong are common (retina's InitialTimestampPolicy
        // docs); with it missing on a stream, each stream's first packet is its start.
        let playing = session
            .play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive))
            .await?;
        Ok((peer, playing.demuxed()?, selected))
    }

    /// Ends the event's publisher session (the transcoder holds the stream open for its
    /// reconnect grace period) and frees its publishing slot.
    async fn end(self) {
        if let Some(publisher) = self.publisher {
            publisher.end().await;
            info!(frames = self.frames, "rtsp pull session ended");
        }
    }
}

fn rtp_time(ts: retina::Timestamp) -> RtpTime {
    RtpTime {
        elapsed: ts.elapsed(),
        clock_rate: ts.clock_rate().get(),
    }
}

/// Feeds stream `i`'s current parameters to the converter.
fn parameters(
    demuxed: &Demuxed,
    i: usize,
    conv: &mut RtpToStream,
    out: &mut Converted,
) -> Result<(), PullError> {
    let media = |track, source| PullError::Media {
        track,
        rtp_timestamp: 0,
        source,
    };
    match demuxed.streams().get(i).and_then(|s| s.parameters()) {
        Some(ParametersRef::Video(params)) => {
            if let VideoParametersCodec::H264 { sps, pps } = params.codec_params() {
                let converted = conv
                    .video_parameters(sps, pps)
                    .map_err(|e| media("video", e))?;
                merge(out, converted);
            }
        }
        Some(ParametersRef::Audio(params)) => {
            let converted = conv
                .audio_config(params.extra_data())
                .map_err(|e| media("audio", e))?;
            merge(out, converted);
        }
        _ => debug!(stream = i, "no parameters yet"),
    }
    Ok(())
}

fn merge(into: &mut Converted, from: Converted) {
    into.events.extend(from.events);
    into.dropped += from.dropped;
}

/// The first H.264 video and the first AAC (`mpeg4-generic`, RFC 3640) audio stream.
/// Other streams (G.711 audio, ONVIF metadata) are left alone.
fn select_streams(streams: &[retina::client::Stream]) -> Result<Selected, PullError> {
    let find = |media: &str, encoding: &str| {
        streams
            .iter()
            .position(|s| s.media() == media && s.encoding_name() == encoding)
    };
    let selected = Selected {
        video: find("video", "h264"),
        audio: find("audio", "mpeg4-generic"),
    };
    if selected.video.is_none() && selected.audio.is_none() {
        let offered: Vec<String> = streams
            .iter()
            .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
            .collect();
        return Err(PullError::NoUsableStream(offered.join(", ")));
    }
    Ok(selected)
}

/// How long to wait before the next attempt: doubles per failed attempt, capped.
fn next_backoff(current: Duration, max: Duration) -> Duration {
    (current * 2).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(10);
        let mut b = Duration::from_millis(500);
        let mut seen = vec![];
        for _ in 0..7 {
            seen.push(b.as_millis());
            b = next_backoff(b, max);
        }
        assert_eq!(seen, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
    }
}
