//! The WebRTC peer connection of one WHIP session: str0m's `Rtc` (ICE-lite, DTLS, SRTP,
//! depacketizing) on a UDP socket of its own, driven by one task: datagrams and timers
//! in, frames out to the event's publisher slot. str0m is sans-IO: `handle_input`, then
//! `poll_output` until `Timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use floodlight_media::{StreamEvent, TrackKind};
use str0m::crypto::CryptoProvider;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc, RtcError};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::config::WhipConfig;
use super::stun;
use super::to_stream::{MediaError, RtpFrame, WebRtcToStream};
use crate::publisher::{PublishStopped, Publisher};

/// Largest datagram read; WebRTC stays under the path MTU (str0m's DATAGRAM_MTU_WARN).
const RECV_BUFFER: usize = 2048;

/// Why a peer connection (and so its WHIP session) ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerEnd {
    #[error("the publisher deleted the session")]
    Deleted,
    #[error("the server is shutting down")]
    Shutdown,
    #[error("ICE and DTLS not connected within {0} s")]
    ConnectTimeout(u64),
    #[error("no packet for {0} s")]
    Idle(u64),
    #[error("webrtc: {0}")]
    Rtc(#[from] RtcError),
    #[error("udp: {0}")]
    Io(#[from] std::io::Error),
    #[error("media: {0}")]
    Media(#[from] MediaError),
    #[error("{0}")]
    PublishStopped(#[from] PublishStopped),
}

/// A negotiated peer connection and everything it needs to run.
pub(crate) struct Peer {
    pub(crate) rtc: Rtc,
    pub(crate) socket: UdpSocket,
    /// The address announced as our ICE candidate: where the publisher's datagrams go.
    pub(crate) candidate: SocketAddr,
    /// Our ICE password (the answer's `a=ice-pwd`), for the PRIORITY policy.
    pub(crate) local_password: String,
    pub(crate) crypto: Arc<CryptoProvider>,
    pub(crate) publisher: Publisher,
    pub(crate) converter: WebRtcToStream,
    /// The video m-line, to ask for keyframes on.
    pub(crate) video_mid: Mid,
    pub(crate) config: Arc<WhipConfig>,
}

/// Per-connection counts behind rolled-up log lines.
#[derive(Default)]
struct Counters {
    /// Datagrams that are none of STUN, DTLS, RTP or RTCP.
    unknown_datagrams: u64,
    /// The "no PLI/FIR negotiated" line was logged.
    warned_no_feedback: bool,
}

impl Peer {
    /// Runs the connection until it ends; the publisher slot is released on every path.
    pub(crate) async fn run(
        mut self,
        mut deleted: oneshot::Receiver<()>,
        mut shutdown: watch::Receiver<bool>,
    ) -> PeerEnd {
        let end = self.drive(&mut deleted, &mut shutdown).await;
        self.rtc.disconnect();
        self.publisher.end().await;
        end
    }

    async fn drive(
        &mut self,
        deleted: &mut oneshot::Receiver<()>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> PeerEnd {
        let connect_deadline = Instant::now() + self.config.connect_timeout();
        let mut connected = false;
        let mut last_packet = Instant::now();
        let mut counters = Counters::default();
        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            let timeout = match self.poll(&mut connected, &mut counters).await {
                Ok(timeout) => timeout,
                Err(end) => return end,
            };
            let quiet_deadline = if connected {
                last_packet + self.config.idle_timeout()
            } else {
                connect_deadline
            };
            tokio::select! {
                _ = &mut *deleted => return PeerEnd::Deleted,
                _ = shutdown.wait_for(|stop| *stop) => return PeerEnd::Shutdown,
                _ = tokio::time::sleep_until(quiet_deadline.into()) => {
                    return if connected {
                        PeerEnd::Idle(self.config.idle_timeout_secs)
                    } else {
                        PeerEnd::ConnectTimeout(self.config.connect_timeout_secs)
                    };
                }
                _ = tokio::time::sleep_until(timeout.into()) => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        return e.into();
                    }
                }
                received = self.socket.recv_from(&mut buf) => {
                    let (n, source) = match received {
                        Ok(r) => r,
                        Err(e) => return e.into(),
                    };
                    last_packet = Instant::now();
                    if let Err(e) = self.receive(&buf[..n], source, &mut counters) {
                        return e.into();
                    }
                }
            }
        }
    }

    /// Feeds one datagram to str0m; anything that is not WebRTC is counted and dropped.
    fn receive(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        counters: &mut Counters,
    ) -> Result<(), RtcError> {
        let fixed = stun::add_missing_priority(
            datagram,
            self.local_password.as_bytes(),
            self.crypto.sha1_hmac_provider,
        );
        let Ok(contents) = DatagramRecv::try_from(fixed.as_deref().unwrap_or(datagram)) else {
            counters.unknown_datagrams += 1;
            metrics::counter!("floodlight_ingest_whip_unknown_datagrams_total").increment(1);
            if counters.unknown_datagrams % 1000 == 1 {
                debug!(%source, count = counters.unknown_datagrams, "non-WebRTC datagrams dropped");
            }
            return Ok(());
        };
        self.rtc.handle_input(Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.candidate,
                contents,
            },
        ))
    }

    /// Sends what str0m has to send and handles its events, until it names its next
    /// timeout.
    async fn poll(
        &mut self,
        connected: &mut bool,
        counters: &mut Counters,
    ) -> Result<Instant, PeerEnd> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(t) => {
                    if let Err(e) = self.socket.send_to(&t.contents, t.destination).await {
                        debug!(error = %e, destination = %t.destination, "udp send failed");
                    }
                }
                Output::Event(Event::Connected) => {
                    *connected = true;
                    info!("webrtc connected");
                    // The encoder's first keyframe may have gone out before DTLS was up.
                    self.request_keyframe(true, counters);
                }
                // ICE consent policy: FFmpeg 8's WHIP muxer sends no consent checks
                // after its first (RFC 7675 §5.1 wants one every ~5 s), so the ICE-lite
                // agent gives its pair up after 15 s while media still flows. A session
                // ends on silence instead: no datagram at all for `idle_timeout_secs`.
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => debug!("ice consent lapsed; the session lives while packets arrive"),
                Output::Event(Event::MediaData(data)) => self.media(data, counters).await?,
                Output::Event(_) => {}
            }
        }
    }

    async fn media(&mut self, data: MediaData, counters: &mut Counters) -> Result<(), PeerEnd> {
        let track = match data.params.spec().codec {
            Codec::H264 => TrackKind::Video,
            Codec::Opus => TrackKind::Audio,
            // Negotiation offers nothing else; a stray payload type is not ours to use.
            _ => return Ok(()),
        };
        self.publisher.record_bytes(data.data.len());
        let converted = self.converter.frame(RtpFrame {
            track,
            rtp_time: data.time.numer(),
            clock_rate: data.time.denom(),
            arrival: data.network_time,
            contiguous: data.contiguous,
            data: &data.data,
        })?;
        self.publisher.record_dropped(converted.dropped);
        self.request_keyframe(converted.request_keyframe, counters);
        for event in converted.events {
            match event {
                StreamEvent::Tracks(tracks) => self.publisher.send_tracks(tracks).await?,
                StreamEvent::Frame(frame) => self.publisher.send_frame(frame).await?,
                StreamEvent::Ended => {}
            }
        }
        Ok(())
    }

    /// Sends a PLI (or a FIR where only that was negotiated) when the converter wants a
    /// keyframe and the rate limit allows. A publisher that negotiated neither (FFmpeg's
    /// WHIP muxer offers no `a=rtcp-fb`) keeps its own keyframe interval.
    fn request_keyframe(&mut self, wanted: bool, counters: &mut Counters) {
        if !self.converter.keyframe_due(wanted, Instant::now()) {
            return;
        }
        let Some(mut writer) = self.rtc.writer(self.video_mid) else {
            return;
        };
        let sent = [KeyframeRequestKind::Pli, KeyframeRequestKind::Fir]
            .into_iter()
            .find(|&kind| writer.is_request_keyframe_possible(kind))
            .map(|kind| writer.request_keyframe(None, kind));
        match sent {
            Some(Ok(())) => {
                metrics::counter!("floodlight_ingest_whip_keyframe_requests_total").increment(1);
            }
            // No receive stream yet (no packet from the publisher): the next frame asks.
            Some(Err(e)) => debug!(error = %e, "keyframe request not sent"),
            None => {
                if !counters.warned_no_feedback {
                    counters.warned_no_feedback = true;
                    warn!(
                        "the publisher negotiated no PLI/FIR: segments follow its own keyframe interval"
                    );
                }
            }
        }
    }
}
