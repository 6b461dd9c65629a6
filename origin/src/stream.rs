//! One live stream (an event's current broadcast): its renditions' windows side by side,
//! the master playlist across them, and the status the control plane shows. No I/O.

use floodlight_media::playlist::{AudioRendition, MasterPlaylist, MediaPlaylist, Variant};
use floodlight_media::push::{LastPart, RenditionDescriptor, RenditionKind};
use serde::Serialize;

use crate::resource;
use crate::window::{Bandwidth, PushError, RenditionWindow, WindowLimits};

/// GROUP-ID of the audio renditions in the master playlist (RFC 8216bis §4.4.6.1).
const AUDIO_GROUP: &str = "audio";

/// What a stream looks like right now, for the control plane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStatus {
    pub renditions: Vec<RenditionStatus>,
    /// Sum of the renditions' current bit rates (their latest complete segment), bits/s.
    pub bitrate_bps: u64,
    /// Wall clock (ms since the Unix epoch) when the origin stored the latest part.
    pub last_part_at_ms: Option<i64>,
    /// `POST .../end` came: the playlists carry EXT-X-ENDLIST.
    pub ended: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenditionStatus {
    pub name: String,
    pub kind: RenditionKind,
    pub codecs: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Bits/s of the latest complete segment (estimated from parts before the first one).
    pub bitrate_bps: Option<u64>,
    /// Peak segment bit rate so far: the master playlist's BANDWIDTH share.
    pub peak_bitrate_bps: Option<u64>,
    pub last_part: Option<LastPart>,
}

/// How a descriptor push changed the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Declared {
    Added,
    Updated,
    /// The stream had ended; this descriptor starts a new session with a fresh window.
    NewSession,
}

#[derive(Debug)]
pub(crate) struct StreamCore {
    limits: WindowLimits,
    /// In declaration order, which is the master playlist's variant order.
    renditions: Vec<RenditionWindow>,
    ended: bool,
}

impl StreamCore {
    pub(crate) fn new(limits: WindowLimits) -> Self {
        StreamCore {
            limits,
            renditions: Vec::new(),
            ended: false,
        }
    }

    /// Declares a rendition, or updates its descriptor. After the stream ended, a
    /// descriptor starts a new session: the event went live again.
    pub(crate) fn declare(
        &mut self,
        descriptor: RenditionDescriptor,
    ) -> Result<Declared, PushError> {
        validate_descriptor(&descriptor)?;
        let mut added = Declared::Added;
        if self.ended {
            self.renditions.clear();
            self.ended = false;
            added = Declared::NewSession;
        }
        match self.rendition_mut(&descriptor.name) {
            Some(window) => {
                window.update_descriptor(descriptor)?;
                Ok(Declared::Updated)
            }
            None => {
                self.renditions
                    .push(RenditionWindow::new(descriptor, self.limits));
                Ok(added)
            }
        }
    }

    pub(crate) fn rendition(&self, name: &str) -> Option<&RenditionWindow> {
        self.renditions.iter().find(|w| w.descriptor().name == name)
    }

    pub(crate) fn rendition_mut(&mut self, name: &str) -> Option<&mut RenditionWindow> {
        self.renditions
            .iter_mut()
            .find(|w| w.descriptor().name == name)
    }

    pub(crate) fn end(&mut self) {
        for window in &mut self.renditions {
            window.end();
        }
        self.ended = true;
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    /// The longest target duration of the stream's renditions.
    pub(crate) fn target_duration(&self) -> u32 {
        self.renditions
            .iter()
            .map(RenditionWindow::target_duration)
            .max()
            .unwrap_or(1)
    }

    /// A rendition's media playlist, reporting every other rendition (RFC 8216bis §4.4.5.4).
    pub(crate) fn media_playlist(&self, name: &str) -> Option<MediaPlaylist> {
        let window = self.rendition(name)?;
        let reports = self
            .renditions
            .iter()
            .filter(|w| w.descriptor().name != name)
            .filter_map(|w| w.report());
        Some(window.media_playlist(reports.collect()))
    }

    /// Every declared rendition has at least one part, so the master playlist can list
    /// them all with a measured bandwidth.
    pub(crate) fn every_rendition_started(&self) -> bool {
        !self.renditions.is_empty() && self.renditions.iter().all(|w| w.bandwidth().is_some())
    }

    /// The master playlist over the renditions that have parts; `None` while none has.
    /// Video renditions are the variants, each playing with the audio group; a stream
    /// without video lists its audio renditions as the variants (RFC 8216bis §4.4.6.2).
    pub(crate) fn master_playlist(&self) -> Option<MasterPlaylist> {
        let started = |kind| {
            self.renditions
                .iter()
                .filter(move |w| w.descriptor().kind == kind)
                .filter_map(|w| w.bandwidth().map(|b| (w.descriptor(), b)))
        };
        let audio: Vec<(&RenditionDescriptor, Bandwidth)> = started(RenditionKind::Audio).collect();
        let video: Vec<(&RenditionDescriptor, Bandwidth)> = started(RenditionKind::Video).collect();
        if video.is_empty() {
            if audio.is_empty() {
                return None;
            }
            let variants = audio
                .iter()
                .map(|&(d, b)| variant(d, b, d.codecs.clone(), None))
                .collect();
            return Some(MasterPlaylist {
                variants,
                audio: Vec::new(),
            });
        }
        // RFC 8216bis §4.4.6.2: BANDWIDTH covers the variant with any rendition of its
        // audio group, and CODECS lists every format the variant may play.
        let audio_peak = audio.iter().map(|(_, b)| b.peak).max().unwrap_or(0);
        let audio_average = audio.iter().map(|(_, b)| b.average).max().unwrap_or(0);
        let mut audio_codecs: Vec<&str> = Vec::new();
        for (descriptor, _) in &audio {
            if !audio_codecs.contains(&descriptor.codecs.as_str()) {
                audio_codecs.push(&descriptor.codecs);
            }
        }
        let audio_group = (!audio.is_empty()).then(|| AUDIO_GROUP.to_string());
        let variants = video
            .iter()
            .map(|&(descriptor, bandwidth)| {
                let codecs =
                    std::iter::once(descriptor.codecs.as_str()).chain(audio_codecs.iter().copied());
                let total = Bandwidth {
                    peak: bandwidth.peak + audio_peak,
                    average: bandwidth.average + audio_average,
                    current: bandwidth.current,
                };
                variant(
                    descriptor,
                    total,
                    codecs.collect::<Vec<_>>().join(","),
                    audio_group.clone(),
                )
            })
            .collect();
        let audio = audio
            .iter()
            .enumerate()
            .map(|(i, (descriptor, _))| AudioRendition {
                group_id: AUDIO_GROUP.to_string(),
                name: descriptor.name.clone(),
                uri: resource::variant_uri(&descriptor.name),
                default: i == 0,
                autoselect: true,
                channels: descriptor.channels,
                language: None,
            })
            .collect();
        Some(MasterPlaylist { variants, audio })
    }

    pub(crate) fn status(&self) -> StreamStatus {
        let renditions: Vec<RenditionStatus> = self
            .renditions
            .iter()
            .map(|window| {
                let descriptor = window.descriptor();
                let bandwidth = window.bandwidth();
                RenditionStatus {
                    name: descriptor.name.clone(),
                    kind: descriptor.kind,
                    codecs: descriptor.codecs.clone(),
                    width: descriptor.width,
                    height: descriptor.height,
                    bitrate_bps: bandwidth.map(|b| b.current),
                    peak_bitrate_bps: bandwidth.map(|b| b.peak),
                    last_part: window.last().cloned(),
                }
            })
            .collect();
        StreamStatus {
            bitrate_bps: renditions.iter().filter_map(|r| r.bitrate_bps).sum(),
            last_part_at_ms: self
                .renditions
                .iter()
                .filter_map(RenditionWindow::last_push_ms)
                .max(),
            ended: self.ended,
            renditions,
        }
    }
}

fn variant(
    descriptor: &RenditionDescriptor,
    bandwidth: Bandwidth,
    codecs: String,
    audio_group: Option<String>,
) -> Variant {
    Variant {
        uri: resource::variant_uri(&descriptor.name),
        bandwidth: bandwidth.peak,
        average_bandwidth: Some(bandwidth.average),
        codecs,
        resolution: descriptor.width.zip(descriptor.height),
        frame_rate: descriptor.frame_rate,
        audio_group,
    }
}

/// Checks a descriptor on its own, before it touches any stream.
pub(crate) fn validate_descriptor(descriptor: &RenditionDescriptor) -> Result<(), PushError> {
    let invalid = |reason: String| Err(PushError::InvalidDescriptor(reason));
    if !resource::is_valid_rendition_name(&descriptor.name) {
        return invalid(format!(
            "name {:?} must be 1-64 letters, digits, '-' or '_' (and not \"end\")",
            descriptor.name
        ));
    }
    // ARCHITECTURE.md: the part target is 100 ms – 1 s.
    if !(100..=1000).contains(&descriptor.part_target_ms) {
        return invalid(format!(
            "part_target_ms {} is outside 100..=1000",
            descriptor.part_target_ms
        ));
    }
    if descriptor.segment_target_ms < descriptor.part_target_ms {
        return invalid(format!(
            "segment_target_ms {} is shorter than part_target_ms {}",
            descriptor.segment_target_ms, descriptor.part_target_ms
        ));
    }
    if descriptor.codecs.trim().is_empty() {
        return invalid("codecs must name the RFC 6381 codec string".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::window::tests::{LIMITS, descriptor, meta, part_bytes};

    fn push_segments(stream: &mut StreamCore, name: &str, segments: u64, extra_parts: u32) {
        let window = stream.rendition_mut(name).unwrap();
        window.push_init(0, Bytes::from_static(b"init")).unwrap();
        for msn in 0..segments {
            for part in 0..4 {
                window
                    .push_part(&meta(msn, part, 4), part_bytes(msn, part), 0)
                    .unwrap();
            }
        }
        for part in 0..extra_parts {
            window
                .push_part(&meta(segments, part, 4), part_bytes(segments, part), 0)
                .unwrap();
        }
    }

    fn stream_with_video_and_audio() -> StreamCore {
        let mut stream = StreamCore::new(LIMITS);
        stream
            .declare(descriptor("video", RenditionKind::Video))
            .unwrap();
        stream
            .declare(descriptor("audio", RenditionKind::Audio))
            .unwrap();
        stream
    }

    #[test]
    fn the_master_playlist_pairs_video_variants_with_the_audio_group() {
        let mut stream = stream_with_video_and_audio();
        assert_eq!(stream.master_playlist(), None);
        push_segments(&mut stream, "video", 2, 0);
        assert!(!stream.every_rendition_started());
        push_segments(&mut stream, "audio", 2, 0);
        assert!(stream.every_rendition_started());
        let master = stream.master_playlist().unwrap();
        // 160 bit/s per rendition (5-byte parts, four per 1 s segment).
        assert_eq!(
            master.variants,
            vec![Variant {
                uri: "video/index.m3u8".to_string(),
                bandwidth: 320,
                average_bandwidth: Some(320),
                codecs: "avc1.64001f,mp4a.40.2".to_string(),
                resolution: Some((1280, 720)),
                frame_rate: Some(30.0),
                audio_group: Some("audio".to_string()),
            }]
        );
        assert_eq!(
            master.audio,
            vec![AudioRendition {
                group_id: "audio".to_string(),
                name: "audio".to_string(),
                uri: "audio/index.m3u8".to_string(),
                default: true,
                autoselect: true,
                channels: Some(2),
                language: None,
            }]
        );
    }

    #[test]
    fn an_audio_only_stream_lists_its_audio_as_the_variant() {
        let mut stream = StreamCore::new(LIMITS);
        stream
            .declare(descriptor("audio", RenditionKind::Audio))
            .unwrap();
        push_segments(&mut stream, "audio", 1, 0);
        let master = stream.master_playlist().unwrap();
        assert_eq!(master.audio, Vec::new());
        assert_eq!(master.variants.len(), 1);
        assert_eq!(master.variants[0].uri, "audio/index.m3u8");
        assert_eq!(master.variants[0].codecs, "mp4a.40.2");
        assert_eq!(master.variants[0].audio_group, None);
    }

    #[test]
    fn media_playlists_report_the_other_renditions() {
        let mut stream = stream_with_video_and_audio();
        push_segments(&mut stream, "video", 2, 1);
        push_segments(&mut stream, "audio", 2, 3);
        let playlist = stream.media_playlist("video").unwrap();
        // RFC 8216bis §4.4.5.4: one EXT-X-RENDITION-REPORT per other rendition, with its
        // last MSN and part.
        assert_eq!(playlist.rendition_reports.len(), 1);
        assert_eq!(playlist.rendition_reports[0].uri, "../audio/index.m3u8");
        assert_eq!(
            (
                playlist.rendition_reports[0].last_msn,
                playlist.rendition_reports[0].last_part
            ),
            (2, 2)
        );
        assert_eq!(stream.media_playlist("nope"), None);
    }

    #[test]
    fn a_descriptor_after_the_end_starts_a_new_session() {
        let mut stream = stream_with_video_and_audio();
        push_segments(&mut stream, "video", 1, 0);
        stream.end();
        assert!(stream.status().ended);
        assert_eq!(
            stream.declare(descriptor("video", RenditionKind::Video)),
            Ok(Declared::NewSession)
        );
        assert!(!stream.is_ended());
        assert!(
            stream.rendition("audio").is_none(),
            "the new session starts with no renditions but this one"
        );
        assert_eq!(stream.rendition("video").unwrap().last(), None);
    }

    #[test]
    fn descriptors_are_validated_and_part_target_is_fixed() {
        let mut stream = stream_with_video_and_audio();
        let mut changed = descriptor("video", RenditionKind::Video);
        changed.part_target_ms = 500;
        // RFC 8216bis §4.4.3.7: PART-TARGET does not change for a stream.
        assert_eq!(
            stream.declare(changed),
            Err(PushError::PartTargetChanged { was: 250, now: 500 })
        );
        let mut renamed = descriptor("video", RenditionKind::Video);
        renamed.name = "../x".to_string();
        assert!(matches!(
            stream.declare(renamed),
            Err(PushError::InvalidDescriptor(_))
        ));
        let mut tiny = descriptor("other", RenditionKind::Video);
        tiny.part_target_ms = 10;
        assert!(matches!(
            stream.declare(tiny),
            Err(PushError::InvalidDescriptor(_))
        ));
        let mut wider = descriptor("video", RenditionKind::Video);
        wider.width = Some(1920);
        assert_eq!(stream.declare(wider), Ok(Declared::Updated));
    }

    #[test]
    fn status_sums_the_current_bitrates() {
        let mut stream = stream_with_video_and_audio();
        push_segments(&mut stream, "video", 2, 0);
        let status = stream.status();
        assert_eq!(status.bitrate_bps, 160);
        assert_eq!(
            status.renditions[0].last_part,
            Some(LastPart {
                msn: 1,
                part: 3,
                ends_segment: true
            })
        );
        assert_eq!(status.renditions[1].bitrate_bps, None);
        assert_eq!(status.last_part_at_ms, Some(0));
        assert!(!status.ended);
    }
}
