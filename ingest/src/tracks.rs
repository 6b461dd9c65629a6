//! Announcing a publisher's tracks downstream, for the protocols whose codec parameters
//! arrive apart from the media (RTMP sequence headers; RTSP's SDP or in-band SPS/PPS).

use floodlight_media::{AacConfig, AvcConfig, Frame, StreamEvent, TrackParams};

/// What one input produced, and what was dropped on the way (for counters).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Converted {
    pub(crate) events: Vec<StreamEvent>,
    pub(crate) dropped: u64,
}

impl Converted {
    /// One frame dropped, nothing produced.
    pub(crate) fn dropped() -> Self {
        Converted {
            events: vec![],
            dropped: 1,
        }
    }
}

/// The tracks' parameters as known now, and as last announced with
/// `StreamEvent::Tracks`.
#[derive(Debug, Default)]
pub(crate) struct TrackAnnouncer {
    pub(crate) video: Option<AvcConfig>,
    pub(crate) audio: Option<AacConfig>,
    announced: Option<Vec<TrackParams>>,
}

impl TrackAnnouncer {
    /// Media has started: the tracks went downstream.
    pub(crate) fn announced(&self) -> bool {
        self.announced.is_some()
    }

    fn tracks(&self) -> Vec<TrackParams> {
        let video = self.video.clone().map(TrackParams::video);
        let audio = self.audio.clone().map(TrackParams::audio);
        video.into_iter().chain(audio).collect()
    }

    /// Call after changing `video` or `audio`. Before media starts, parameters only
    /// accumulate; after, a change (a new SPS from the encoder) is announced again.
    pub(crate) fn reannounce_if_changed(&mut self) -> Converted {
        let mut out = Converted::default();
        if let Some(announced) = &self.announced {
            let tracks = self.tracks();
            if *announced != tracks {
                self.announced = Some(tracks.clone());
                out.events.push(StreamEvent::Tracks(tracks));
            }
        }
        out
    }

    /// A frame, preceded by the tracks when they were not announced yet, or when the
    /// announced set lacks the frame's track (audio whose parameters came after the
    /// first video frame).
    pub(crate) fn media(&mut self, frame: Frame) -> Converted {
        let mut out = Converted::default();
        let known = self
            .announced
            .as_ref()
            .is_some_and(|t| t.iter().any(|p| p.kind == frame.track));
        if !known {
            let tracks = self.tracks();
            self.announced = Some(tracks.clone());
            out.events.push(StreamEvent::Tracks(tracks));
        }
        out.events.push(StreamEvent::Frame(frame));
        out
    }
}
