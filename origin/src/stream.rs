//! One live stream (an event's current broadcast): its renditions' windows side by side,
//! the master playlist across them, and the status the control plane shows. No I/O.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use floodlight_media::PlaybackAccess;
use floodlight_media::playlist::{
    AudioRendition, DeltaUpdate, IFramePlaylist, IFrameVariant, MasterPlaylist, MediaPlaylist,
    Variant,
};
use floodlight_media::push::{LastPart, PartMeta, RenditionDescriptor, RenditionKind};
use serde::Serialize;

use crate::access::UriEnds;
use crate::resource;
use crate::window::{
    Bandwidth, OverTarget, PushError, Pushed, RenditionWindow, WindowLimits, target_duration_for,
};

/// GROUP-ID of the audio renditions in the master playlist (RFC 8216bis §4.4.6.1).
const AUDIO_GROUP: &str = "audio";
/// Longest segment target a descriptor may declare. LL-HLS segments last a few seconds
/// (ARCHITECTURE.md: 2 s); the cap keeps a pusher from declaring a target duration that
/// would stretch blocking timeouts and retention, all counted in target durations.
const MAX_SEGMENT_TARGET_MS: u32 = 30_000;

/// What a stream looks like right now, for the control plane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStatus {
    /// The renditions the master playlist offers (shed ones are not among them).
    pub renditions: Vec<RenditionStatus>,
    /// Renditions the transcoder stopped producing (rungs shed under load), oldest first.
    pub shed_renditions: Vec<ShedRendition>,
    /// Sum of the renditions' current bit rates (their latest complete segment), bits/s.
    pub bitrate_bps: u64,
    /// Wall clock (ms since the Unix epoch) when the origin stored the latest part.
    pub last_part_at_ms: Option<i64>,
    /// `POST .../end` came (or no push for `idle_end_secs`): the playlists carry
    /// EXT-X-ENDLIST.
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

/// A rendition the transcoder stopped producing (`DELETE /push/v1/{event_id}/{rendition}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShedRendition {
    pub name: String,
    /// What the transcoder said (`reason=`), e.g. `cpu`.
    pub reason: String,
    /// Wall clock (ms since the Unix epoch) when the origin was told.
    pub at_ms: i64,
}

/// How a descriptor push changed the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Declared {
    Added,
    Updated,
    /// A shed rendition declared again: back in the master playlist and the rendition
    /// reports once its first new part is stored, continuing at its next segment (or,
    /// back after longer than its window holds, starting over there).
    Resumed,
    /// The stream had ended; this descriptor starts a new session with a fresh window.
    NewSession,
}

/// What bounds a stream, from the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    pub(crate) window: WindowLimits,
    pub(crate) max_renditions: usize,
    pub(crate) target_duration_factor: f64,
    /// The start variant (listed first) is the highest one at or below this BANDWIDTH.
    pub(crate) start_variant_max_bandwidth_bps: u64,
}

/// Rendered media playlist texts of one rendition, one per delta form, each with the
/// stream version it was rendered at.
type RenderedPlaylists = [Option<(u64, RenderedPlaylist)>; 3];

/// A media playlist as rendered, shared by every request until the stream changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RenderedPlaylist {
    pub(crate) text: Bytes,
    /// For a token stream, where its URIs end (where each viewer's token goes).
    pub(crate) uri_ends: Option<Arc<UriEnds>>,
}

#[derive(Debug)]
pub(crate) struct StreamCore {
    limits: StreamLimits,
    /// In declaration order, which is the master playlist's variant order.
    renditions: Vec<RenditionWindow>,
    /// EXT-X-TARGETDURATION of every rendition, fixed by the session's first descriptor:
    /// RFC 8216bis §6.2.1, the value MUST NOT change.
    target_duration: Option<u32>,
    ended: bool,
    /// Who may play the stream: the latest descriptor pushed for any rendition decides.
    access: PlaybackAccess,
    /// Bumped by every change to any rendition (a playlist also reports its siblings).
    version: u64,
    /// So the blocked requests one part wakes render the playlist once, not each.
    rendered: HashMap<String, RenderedPlaylists>,
    /// Renditions shed this session; their windows stay (parts and segments remain
    /// fetchable) but leave the master playlist and the rendition reports.
    shed: Vec<ShedRendition>,
    /// The latest JPEG poster (`PUT .../thumbnail.jpg`) of this session.
    thumbnail: Option<Bytes>,
}

impl StreamCore {
    pub(crate) fn new(limits: StreamLimits) -> Self {
        StreamCore {
            limits,
            renditions: Vec::new(),
            target_duration: None,
            ended: false,
            access: PlaybackAccess::Public,
            version: 0,
            rendered: HashMap::new(),
            shed: Vec::new(),
            thumbnail: None,
        }
    }

    /// Declares a rendition, or updates its descriptor. After the stream ended, a
    /// descriptor starts a new session: the event went live again. Nothing changes when
    /// the descriptor is refused.
    pub(crate) fn declare(
        &mut self,
        descriptor: RenditionDescriptor,
    ) -> Result<Declared, PushError> {
        validate_descriptor(&descriptor)?;
        let access = descriptor.access;
        let new_session = self.ended;
        let wanted = target_duration_for(
            descriptor.segment_target_ms,
            self.limits.target_duration_factor,
        );
        if !new_session
            && let Some(target_duration) = self.target_duration
            && wanted > target_duration
        {
            return Err(PushError::TargetDurationChanged {
                target_duration,
                wanted,
                segment_target_ms: descriptor.segment_target_ms,
            });
        }
        if !new_session
            && let Some(window) = self
                .renditions
                .iter_mut()
                .find(|w| w.descriptor().name == descriptor.name)
        {
            window.update_descriptor(descriptor)?;
            let name = window.descriptor().name.clone();
            let resumed = self.shed.iter().any(|s| s.name == name);
            if resumed {
                window.reopen();
                self.shed.retain(|s| s.name != name);
            }
            self.access = access;
            self.version += 1;
            return Ok(if resumed {
                Declared::Resumed
            } else {
                Declared::Updated
            });
        }
        if !new_session && self.renditions.len() >= self.limits.max_renditions {
            return Err(PushError::TooManyRenditions {
                max: self.limits.max_renditions,
            });
        }
        if new_session {
            self.renditions.clear();
            self.rendered.clear();
            self.shed.clear();
            self.thumbnail = None;
            self.target_duration = None;
            self.ended = false;
        }
        let target_duration = *self.target_duration.get_or_insert(wanted);
        self.access = access;
        self.renditions.push(RenditionWindow::new(
            descriptor,
            self.limits.window,
            target_duration,
        ));
        self.version += 1;
        Ok(if new_session {
            Declared::NewSession
        } else {
            Declared::Added
        })
    }

    pub(crate) fn rendition(&self, name: &str) -> Option<&RenditionWindow> {
        self.renditions.iter().find(|w| w.descriptor().name == name)
    }

    fn rendition_mut(&mut self, name: &str) -> Result<&mut RenditionWindow, PushError> {
        self.renditions
            .iter_mut()
            .find(|w| w.descriptor().name == name)
            .ok_or_else(|| PushError::UnknownRendition(name.to_string()))
    }

    /// Stores an init segment version of a rendition.
    pub(crate) fn push_init(
        &mut self,
        rendition: &str,
        version: u32,
        bytes: Bytes,
    ) -> Result<Pushed, PushError> {
        let pushed = self.rendition_mut(rendition)?.push_init(version, bytes)?;
        if pushed == Pushed::Stored {
            // Making room for it may have shortened the window.
            self.version += 1;
        }
        Ok(pushed)
    }

    /// Stores one part of a rendition (`now_ms`: the wall clock, for the status only).
    pub(crate) fn push_part(
        &mut self,
        rendition: &str,
        meta: &PartMeta,
        bytes: Bytes,
        now_ms: i64,
    ) -> Result<Pushed, PushError> {
        if let Some(shed) = self.shed(rendition) {
            return Err(PushError::Shed {
                reason: shed.reason.clone(),
            });
        }
        // A shed rung back after longer than its window holds: it starts over at this
        // part, numbered on with its siblings rather than behind a run of gaps.
        let restart = self
            .rendition(rendition)
            .filter(|w| w.resumes_far_ahead(meta))
            .map(|_| {
                self.ladder()
                    .filter(|w| w.descriptor().name != rendition)
                    .find_map(|w| w.discontinuity_sequence_at(meta.msn, meta.discontinuity))
                    .unwrap_or(0)
            });
        let window = self.rendition_mut(rendition)?;
        let pushed = match restart {
            Some(discontinuity_sequence) => {
                window.push_part_restarting(meta, bytes, now_ms, discontinuity_sequence)?
            }
            None => window.push_part(meta, bytes, now_ms)?,
        };
        if pushed == Pushed::Stored {
            self.version += 1;
        }
        Ok(pushed)
    }

    /// Takes a rendition out of the ladder (a rung shed under load): its segment in
    /// progress closes as it is, its playlist ends, and it leaves the master playlist and
    /// the other renditions' reports. `false` if it was shed already (the first reason is
    /// kept).
    pub(crate) fn shed_rendition(
        &mut self,
        name: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, PushError> {
        if self.shed(name).is_some() {
            return Ok(false);
        }
        self.rendition_mut(name)?.end();
        self.shed.push(ShedRendition {
            name: name.to_string(),
            reason: reason.to_string(),
            at_ms: now_ms,
        });
        self.version += 1;
        Ok(true)
    }

    /// The rendition's shedding, if it was shed this session.
    pub(crate) fn shed(&self, name: &str) -> Option<&ShedRendition> {
        self.shed.iter().find(|s| s.name == name)
    }

    fn is_shed(&self, window: &RenditionWindow) -> bool {
        self.shed(&window.descriptor().name).is_some()
    }

    /// Keeps the latest poster of this session.
    pub(crate) fn set_thumbnail(&mut self, jpeg: Bytes) {
        self.thumbnail = Some(jpeg);
    }

    pub(crate) fn thumbnail(&self) -> Option<Bytes> {
        self.thumbnail.clone()
    }

    pub(crate) fn end(&mut self) {
        for window in &mut self.renditions {
            window.end();
        }
        self.ended = true;
        self.version += 1;
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    pub(crate) fn access(&self) -> PlaybackAccess {
        self.access
    }

    /// The stream's EXT-X-TARGETDURATION (1 before any descriptor).
    pub(crate) fn target_duration(&self) -> u32 {
        self.target_duration.unwrap_or(1)
    }

    /// Complete segments longer than the target duration allows, over all renditions of
    /// this session (RFC 8216bis §4.4.3.1).
    pub(crate) fn segments_over_target(&self) -> u64 {
        self.renditions
            .iter()
            .map(RenditionWindow::segments_over_target)
            .sum()
    }

    /// The first such segment, with its rendition.
    pub(crate) fn first_over_target(&self) -> Option<(&str, OverTarget)> {
        self.renditions.iter().find_map(|w| {
            w.first_over_target()
                .map(|over| (w.descriptor().name.as_str(), over))
        })
    }

    /// A rendition's media playlist, reporting every other rendition (RFC 8216bis §4.4.5.4).
    pub(crate) fn media_playlist(&self, name: &str) -> Option<MediaPlaylist> {
        let window = self.rendition(name)?;
        let reports = self
            .renditions
            .iter()
            .filter(|w| w.descriptor().name != name && self.offered(w))
            .filter_map(|w| w.report());
        Some(window.media_playlist(reports.collect()))
    }

    /// The rendered text of a rendition's media playlist in the asked form, rendered once
    /// per change of the stream.
    pub(crate) fn media_playlist_text(
        &mut self,
        name: &str,
        delta: DeltaUpdate,
    ) -> Option<RenderedPlaylist> {
        let form = match delta {
            DeltaUpdate::Full => 0,
            DeltaUpdate::Skip => 1,
            DeltaUpdate::SkipV2 => 2,
        };
        if let Some(Some((version, rendered))) = self.rendered.get(name).map(|r| &r[form])
            && *version == self.version
        {
            return Some(rendered.clone());
        }
        let text = Bytes::from(self.media_playlist(name)?.render(delta));
        let uri_ends =
            (self.access == PlaybackAccess::Token).then(|| Arc::new(UriEnds::find(&text)));
        let rendered = RenderedPlaylist { text, uri_ends };
        self.rendered.entry(name.to_string()).or_default()[form] =
            Some((self.version, rendered.clone()));
        Some(rendered)
    }

    /// A video rendition's I-frame playlist; `None` for an unknown or audio rendition.
    pub(crate) fn iframe_playlist(&self, name: &str) -> Option<IFramePlaylist> {
        self.rendition(name)
            .filter(|w| w.descriptor().kind == RenditionKind::Video)
            .map(RenditionWindow::iframe_playlist)
    }

    /// The master playlist can be answered: the stream ended, or no started rendition
    /// still lacks the BANDWIDTH it may declare ([`RenditionWindow::variant_bandwidth`]:
    /// an unhinted video rung waits for its first complete segment) and either every
    /// rendition in the ladder has one or a rendition of the kind that makes the variants
    /// has a complete segment already, so a rung declared later than the others, or
    /// starting later, is not waited for: it is left out of this master rather than
    /// holding every viewer's startup until the blocking timeout.
    pub(crate) fn master_ready(&self) -> bool {
        if self.ended {
            return true;
        }
        let ladder: Vec<&RenditionWindow> = self.ladder().collect();
        if ladder.is_empty() {
            return false;
        }
        let variant_kind = if ladder
            .iter()
            .any(|w| w.descriptor().kind == RenditionKind::Video)
        {
            RenditionKind::Video
        } else {
            RenditionKind::Audio
        };
        let unsettled = ladder
            .iter()
            .any(|w| w.bandwidth().is_some() && w.variant_bandwidth().is_none());
        !unsettled
            && (ladder.iter().all(|w| w.variant_bandwidth().is_some())
                || ladder
                    .iter()
                    .any(|w| w.descriptor().kind == variant_kind && w.has_complete_segment()))
    }

    /// Whether the master playlist and the rendition reports offer the rendition: not
    /// shed, and not resumed without a new part yet.
    fn offered(&self, window: &RenditionWindow) -> bool {
        !self.is_shed(window) && !window.is_resuming()
    }

    /// The renditions the master offers.
    fn ladder(&self) -> impl Iterator<Item = &RenditionWindow> {
        self.renditions.iter().filter(|w| self.offered(w))
    }

    /// The master playlist; `None` while it cannot be right yet.
    ///
    /// Players load a master playlist once and keep it for the session, so what it says a
    /// variant plays must be right from the first answer, while BANDWIDTH may be an
    /// estimate. Hence:
    /// - Video renditions are the variants, each playing with the audio group. Only video
    ///   renditions whose BANDWIDTH can be right are listed
    ///   ([`RenditionWindow::variant_bandwidth`]; an unlisted rung costs a quality choice,
    ///   not the picture); with video declared but none started: `None`, since an
    ///   audio-only master would leave those players without picture.
    /// - Every declared audio rendition is in the group, started or not (its playlist fills
    ///   when its parts land), so a variant never loses its sound. CODECS comes from the
    ///   descriptors (RFC 8216bis §4.4.6.2: every format the variant may play); BANDWIDTH
    ///   adds the highest measured audio peak, none while no audio has parts yet.
    /// - A stream without video lists its audio renditions that have parts as variants.
    pub(crate) fn master_playlist(&self) -> Option<MasterPlaylist> {
        let declared = |kind| self.ladder().filter(move |w| w.descriptor().kind == kind);
        let started =
            |kind| declared(kind).filter_map(|w| w.bandwidth().map(|b| (w.descriptor(), b)));
        let settled = |kind| {
            declared(kind).filter_map(|w| w.variant_bandwidth().map(|b| (w.descriptor(), b)))
        };
        if declared(RenditionKind::Video).next().is_none() {
            let variants: Vec<Variant> = started(RenditionKind::Audio)
                .map(|(d, b)| variant(d, b, d.codecs.clone(), None))
                .collect();
            let variants = self.start_variant_first(variants);
            return (!variants.is_empty()).then_some(MasterPlaylist {
                variants,
                audio: Vec::new(),
                iframe_variants: Vec::new(),
            });
        }
        // Only rungs whose BANDWIDTH can be right (see `master_ready`); all started ones
        // when none is, as after the blocking timeout, rather than no picture at all.
        let mut video: Vec<(&RenditionDescriptor, Bandwidth)> =
            settled(RenditionKind::Video).collect();
        if video.is_empty() {
            video = started(RenditionKind::Video).collect();
        }
        if video.is_empty() {
            return None;
        }
        let audio_peak = started(RenditionKind::Audio)
            .map(|(_, b)| b.peak)
            .max()
            .unwrap_or(0);
        let audio_average = started(RenditionKind::Audio)
            .map(|(_, b)| b.average)
            .max()
            .unwrap_or(0);
        let audio: Vec<&RenditionDescriptor> = declared(RenditionKind::Audio)
            .map(RenditionWindow::descriptor)
            .collect();
        let mut audio_codecs: Vec<&str> = Vec::new();
        for descriptor in &audio {
            if !audio_codecs.contains(&descriptor.codecs.as_str()) {
                audio_codecs.push(&descriptor.codecs);
            }
        }
        let audio_group = (!audio.is_empty()).then(|| AUDIO_GROUP.to_string());
        let variants: Vec<Variant> = video
            .iter()
            .map(|&(descriptor, bandwidth)| {
                let codecs =
                    std::iter::once(descriptor.codecs.as_str()).chain(audio_codecs.iter().copied());
                let total = Bandwidth {
                    peak: bandwidth.peak.saturating_add(audio_peak),
                    average: bandwidth.average.saturating_add(audio_average),
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
            .map(|(i, descriptor)| AudioRendition {
                group_id: AUDIO_GROUP.to_string(),
                name: descriptor.name.clone(),
                uri: resource::variant_uri(&descriptor.name),
                default: i == 0,
                autoselect: true,
                channels: descriptor.channels,
                language: None,
            })
            .collect();
        let variants = self.start_variant_first(variants);
        // The I-frame playlists, in the variants' order (RFC 8216bis §4.4.6.3): scrubbing
        // for every rung a player may be on.
        let iframe_variants = variants
            .iter()
            .filter_map(|variant| {
                let window = declared(RenditionKind::Video)
                    .find(|w| resource::variant_uri(&w.descriptor().name) == variant.uri)?;
                let bandwidth = window.iframe_bandwidth()?;
                let descriptor = window.descriptor();
                Some(IFrameVariant {
                    uri: resource::iframe_playlist_uri(&descriptor.name),
                    bandwidth: bandwidth.peak,
                    average_bandwidth: Some(bandwidth.average),
                    codecs: descriptor.codecs.clone(),
                    resolution: descriptor.width.zip(descriptor.height),
                })
            })
            .collect();
        Some(MasterPlaylist {
            variants,
            audio,
            iframe_variants,
        })
    }

    /// Variants by BANDWIDTH, highest first, with the start variant moved to the top.
    /// Apple's HLS authoring spec: a player starts with the first variant listed (hls.js
    /// likewise takes the first listed as its start level), before it has measured the
    /// network. The top rung would stall phones on startup, the bottom one would show
    /// every viewer a blurry first seconds: the start variant is the highest one at or
    /// below `start_variant_max_bandwidth_bps` (a 720p rung by default), or the lowest
    /// when all are above it. The rest follow highest first, the order the issue's
    /// operators read a ladder in.
    fn start_variant_first(&self, mut variants: Vec<Variant>) -> Vec<Variant> {
        variants.sort_by(|a, b| b.bandwidth.cmp(&a.bandwidth).then(a.uri.cmp(&b.uri)));
        let start = variants
            .iter()
            .position(|v| v.bandwidth <= self.limits.start_variant_max_bandwidth_bps)
            .unwrap_or(variants.len().saturating_sub(1));
        if start < variants.len() {
            let first = variants.remove(start);
            variants.insert(0, first);
        }
        variants
    }

    pub(crate) fn status(&self) -> StreamStatus {
        let renditions: Vec<RenditionStatus> = self
            .ladder()
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
            bitrate_bps: renditions
                .iter()
                .filter_map(|r| r.bitrate_bps)
                .fold(0, u64::saturating_add),
            last_part_at_ms: self
                .renditions
                .iter()
                .filter_map(RenditionWindow::last_push_ms)
                .max(),
            ended: self.ended,
            renditions,
            shed_renditions: self.shed.clone(),
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
    if !(descriptor.part_target_ms..=MAX_SEGMENT_TARGET_MS).contains(&descriptor.segment_target_ms)
    {
        return invalid(format!(
            "segment_target_ms {} must be between part_target_ms ({}) and {MAX_SEGMENT_TARGET_MS}",
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

    /// The tests' 1 s segment targets get TARGETDURATION 1.
    const STREAM_LIMITS: StreamLimits = StreamLimits {
        window: LIMITS,
        max_renditions: 3,
        target_duration_factor: 1.0,
        start_variant_max_bandwidth_bps: 2_500_000,
    };

    fn push_segments(stream: &mut StreamCore, name: &str, segments: u64, extra_parts: u32) {
        stream
            .push_init(name, 0, Bytes::from_static(b"init"))
            .unwrap();
        for msn in 0..segments {
            for part in 0..4 {
                stream
                    .push_part(name, &meta(msn, part, 4), part_bytes(msn, part), 0)
                    .unwrap();
            }
        }
        for part in 0..extra_parts {
            stream
                .push_part(
                    name,
                    &meta(segments, part, 4),
                    part_bytes(segments, part),
                    0,
                )
                .unwrap();
        }
    }

    fn stream_with_video_and_audio() -> StreamCore {
        let mut stream = StreamCore::new(STREAM_LIMITS);
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
        push_segments(&mut stream, "audio", 2, 0);
        assert!(stream.master_ready());
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
        let mut stream = StreamCore::new(STREAM_LIMITS);
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
                ends_segment: true,
                init_version: 0,
            })
        );
        assert_eq!(status.renditions[1].bitrate_bps, None);
        assert_eq!(status.last_part_at_ms, Some(0));
        assert!(!status.ended);
    }

    #[test]
    fn the_master_playlist_keeps_the_audio_group_before_audio_has_parts() {
        let mut stream = stream_with_video_and_audio();
        push_segments(&mut stream, "video", 2, 0);
        // After the master's wait timed out: the variant still plays with the audio group
        // (players keep the first master they load), CODECS names the audio from its
        // descriptor (RFC 8216bis §4.4.6.2), and BANDWIDTH is the video's alone.
        let master = stream.master_playlist().unwrap();
        assert_eq!(master.variants.len(), 1);
        assert_eq!(master.variants[0].audio_group.as_deref(), Some("audio"));
        assert_eq!(master.variants[0].codecs, "avc1.64001f,mp4a.40.2");
        assert_eq!(master.variants[0].bandwidth, 160);
        assert_eq!(master.audio.len(), 1);
        assert_eq!(master.audio[0].uri, "audio/index.m3u8");
    }

    #[test]
    fn no_audio_only_master_while_video_is_declared() {
        let mut stream = stream_with_video_and_audio();
        push_segments(&mut stream, "audio", 2, 0);
        assert_eq!(stream.master_playlist(), None);
        push_segments(&mut stream, "video", 1, 0);
        assert_eq!(stream.master_playlist().unwrap().variants.len(), 1);
    }

    #[test]
    fn the_target_duration_is_the_streams_and_fixed() {
        let limits = StreamLimits {
            target_duration_factor: 1.5,
            ..STREAM_LIMITS
        };
        let mut stream = StreamCore::new(limits);
        let mut video = descriptor("video", RenditionKind::Video);
        video.segment_target_ms = 2000;
        stream.declare(video.clone()).unwrap();
        // ceil(2 s × 1.5) = 3.
        assert_eq!(stream.target_duration(), 3);
        // A rendition with a shorter segment target plays with the stream's target duration
        // too: all renditions of a stream share it.
        let mut audio = descriptor("audio", RenditionKind::Audio);
        audio.segment_target_ms = 1000;
        stream.declare(audio).unwrap();
        assert_eq!(stream.rendition("audio").unwrap().target_duration(), 3);
        // RFC 8216bis §6.2.1: EXT-X-TARGETDURATION MUST NOT change, so a descriptor that
        // needs a longer one is refused, and changes nothing.
        let mut longer = video.clone();
        longer.segment_target_ms = 4000;
        longer.width = Some(1920);
        assert_eq!(
            stream.declare(longer),
            Err(PushError::TargetDurationChanged {
                target_duration: 3,
                wanted: 6,
                segment_target_ms: 4000
            })
        );
        assert_eq!(stream.rendition("video").unwrap().descriptor(), &video);
        // A new session may choose again.
        stream.end();
        let mut longer = video.clone();
        longer.segment_target_ms = 4000;
        assert_eq!(stream.declare(longer), Ok(Declared::NewSession));
        assert_eq!(stream.target_duration(), 6);
    }

    #[test]
    fn renditions_per_stream_are_capped() {
        let mut stream = stream_with_video_and_audio();
        stream
            .declare(descriptor("low", RenditionKind::Video))
            .unwrap();
        assert_eq!(
            stream.declare(descriptor("lower", RenditionKind::Video)),
            Err(PushError::TooManyRenditions { max: 3 })
        );
        // Updating a declared one is not a new rendition.
        assert_eq!(
            stream.declare(descriptor("low", RenditionKind::Video)),
            Ok(Declared::Updated)
        );
        assert_eq!(
            stream.push_part("lower", &meta(0, 0, 4), part_bytes(0, 0), 0),
            Err(PushError::UnknownRendition("lower".to_string()))
        );
    }

    #[test]
    fn descriptors_with_absurd_segment_targets_are_refused() {
        let mut stream = StreamCore::new(STREAM_LIMITS);
        let mut huge = descriptor("video", RenditionKind::Video);
        huge.segment_target_ms = u32::MAX;
        assert!(matches!(
            stream.declare(huge),
            Err(PushError::InvalidDescriptor(_))
        ));
    }

    #[test]
    fn a_playlist_is_rendered_once_per_change() {
        let mut stream = stream_with_video_and_audio();
        push_segments(&mut stream, "video", 2, 1);
        let first = stream
            .media_playlist_text("video", DeltaUpdate::Full)
            .unwrap()
            .text;
        assert_eq!(
            first,
            stream
                .media_playlist("video")
                .unwrap()
                .render(DeltaUpdate::Full)
        );
        // Unchanged: the same bytes, not a new rendering.
        let again = stream
            .media_playlist_text("video", DeltaUpdate::Full)
            .unwrap()
            .text;
        assert_eq!(again.as_ptr(), first.as_ptr());
        // Another form is another text.
        let skip = stream
            .media_playlist_text("video", DeltaUpdate::Skip)
            .unwrap()
            .text;
        assert_ne!(skip.as_ptr(), first.as_ptr());
        // A part of another rendition changes the rendition report (RFC 8216bis §4.4.5.4).
        push_segments(&mut stream, "audio", 0, 1);
        let after = stream
            .media_playlist_text("video", DeltaUpdate::Full)
            .unwrap()
            .text;
        assert_ne!(after, first);
        assert!(
            std::str::from_utf8(&after)
                .unwrap()
                .contains("URI=\"../audio/index.m3u8\",LAST-MSN=0,LAST-PART=0")
        );
        assert_eq!(stream.media_playlist_text("nope", DeltaUpdate::Full), None);
    }

    fn rung(name: &str, hint_bps: u64) -> RenditionDescriptor {
        let mut rung = descriptor(name, RenditionKind::Video);
        rung.bandwidth_hint_bps = Some(hint_bps);
        rung
    }

    /// A 3-rung ladder and audio, each with one part.
    fn ladder() -> StreamCore {
        let mut stream = StreamCore::new(StreamLimits {
            max_renditions: 8,
            ..STREAM_LIMITS
        });
        for rung in [
            rung("source", 5_000_000),
            rung("720p", 2_000_000),
            rung("360p", 800_000),
        ] {
            stream.declare(rung).unwrap();
        }
        stream
            .declare(descriptor("audio", RenditionKind::Audio))
            .unwrap();
        for name in ["source", "720p", "360p", "audio"] {
            push_segments(&mut stream, name, 0, 1);
        }
        stream
    }

    #[test]
    fn a_ladder_lists_the_start_variant_first_then_highest_first() {
        let stream = ladder();
        assert!(stream.master_ready());
        let master = stream.master_playlist().unwrap();
        // Before a complete segment: BANDWIDTH = hint × 1.1 plus the audio's estimate
        // (one 5-byte part in 0.25 s), AVERAGE-BANDWIDTH = hint plus the same.
        let listed: Vec<(&str, u64, Option<u64>)> = master
            .variants
            .iter()
            .map(|v| (v.uri.as_str(), v.bandwidth, v.average_bandwidth))
            .collect();
        assert_eq!(
            listed,
            vec![
                // The highest at or below 2.5 Mbit/s starts; then highest first.
                ("720p/index.m3u8", 2_200_160, Some(2_000_160)),
                ("source/index.m3u8", 5_500_160, Some(5_000_160)),
                ("360p/index.m3u8", 880_160, Some(800_160)),
            ]
        );
        // RFC 8216bis §4.4.6.2: CODECS of every track the variant plays.
        assert!(
            master
                .variants
                .iter()
                .all(|v| v.codecs == "avc1.64001f,mp4a.40.2")
        );
        // §4.4.6.3: an I-frame playlist per video variant, in their order, video codec only.
        let iframes: Vec<(&str, &str)> = master
            .iframe_variants
            .iter()
            .map(|i| (i.uri.as_str(), i.codecs.as_str()))
            .collect();
        assert_eq!(
            iframes,
            vec![
                ("720p/iframes.m3u8", "avc1.64001f"),
                ("source/iframes.m3u8", "avc1.64001f"),
                ("360p/iframes.m3u8", "avc1.64001f"),
            ]
        );
        // With every rung above the start limit, the lowest starts.
        let mut stream = StreamCore::new(StreamLimits {
            start_variant_max_bandwidth_bps: 100,
            ..STREAM_LIMITS
        });
        stream.declare(rung("a", 5_000_000)).unwrap();
        stream.declare(rung("b", 1_000_000)).unwrap();
        push_segments(&mut stream, "a", 0, 1);
        push_segments(&mut stream, "b", 0, 1);
        let uris: Vec<String> = stream
            .master_playlist()
            .unwrap()
            .variants
            .into_iter()
            .map(|v| v.uri)
            .collect();
        assert_eq!(uris, vec!["b/index.m3u8", "a/index.m3u8"]);
    }

    #[test]
    fn a_rung_starting_late_does_not_hold_the_master() {
        let mut stream = StreamCore::new(STREAM_LIMITS);
        stream.declare(rung("720p", 2_000_000)).unwrap();
        stream.declare(rung("360p", 800_000)).unwrap();
        push_segments(&mut stream, "720p", 0, 2);
        // 360p has nothing yet: wait, while no video segment is complete.
        assert!(!stream.master_ready());
        for part in 2..4 {
            stream
                .push_part("720p", &meta(0, part, 4), part_bytes(0, part), 0)
                .unwrap();
        }
        // A complete video segment: answer with what has started.
        assert!(stream.master_ready());
        let master = stream.master_playlist().unwrap();
        assert_eq!(master.variants.len(), 1);
        assert_eq!(master.variants[0].uri, "720p/index.m3u8");
    }

    #[test]
    fn a_shed_rendition_leaves_the_master_the_reports_and_the_status() {
        let mut stream = ladder();
        assert_eq!(stream.shed_rendition("360p", "cpu", 1_234), Ok(true));
        // Again: nothing changes, the first reason stays.
        assert_eq!(stream.shed_rendition("360p", "other", 2_000), Ok(false));
        assert_eq!(
            stream.shed_rendition("nope", "cpu", 0),
            Err(PushError::UnknownRendition("nope".to_string()))
        );
        let master = stream.master_playlist().unwrap();
        assert!(master.variants.iter().all(|v| v.uri != "360p/index.m3u8"));
        assert!(
            master
                .iframe_variants
                .iter()
                .all(|v| v.uri != "360p/iframes.m3u8")
        );
        // RFC 8216bis §4.4.5.4: reports name the renditions a player may switch to.
        let reports = stream.media_playlist("720p").unwrap().rendition_reports;
        assert!(reports.iter().all(|r| r.uri != "../360p/index.m3u8"));
        assert_eq!(reports.len(), 2);
        let status = stream.status();
        assert_eq!(
            status.shed_renditions,
            vec![ShedRendition {
                name: "360p".to_string(),
                reason: "cpu".to_string(),
                at_ms: 1_234
            }]
        );
        assert!(status.renditions.iter().all(|r| r.name != "360p"));
        // Its segment in progress closed; its parts are refused from now on.
        let shed = stream.rendition("360p").unwrap();
        assert_eq!(shed.last().map(|l| l.ends_segment), Some(true));
        assert_eq!(
            stream.push_part("360p", &meta(1, 0, 4), part_bytes(1, 0), 0),
            Err(PushError::Shed {
                reason: "cpu".to_string()
            })
        );
        // A shed rendition does not hold the master either.
        assert!(stream.master_ready());
        // Declared again (a transcoder with room for it): back, continuing at the next
        // segment.
        assert_eq!(stream.declare(rung("360p", 800_000)), Ok(Declared::Resumed));
        assert!(stream.status().shed_renditions.is_empty());
        // Nothing new to play yet: still out of the master and the reports.
        let master = stream.master_playlist().unwrap();
        assert!(master.variants.iter().all(|v| v.uri != "360p/index.m3u8"));
        let reports = stream.media_playlist("720p").unwrap().rendition_reports;
        assert!(reports.iter().all(|r| r.uri != "../360p/index.m3u8"));
        let mut next = meta(1, 0, 4);
        next.discontinuity = true;
        assert_eq!(
            stream.push_part("360p", &next, part_bytes(1, 0), 0),
            Ok(Pushed::Stored)
        );
        assert!(
            stream
                .master_playlist()
                .unwrap()
                .variants
                .iter()
                .any(|v| v.uri == "360p/index.m3u8")
        );
    }

    #[test]
    fn a_shed_rung_back_after_its_window_starts_over_with_its_siblings_numbering() {
        let mut stream = StreamCore::new(StreamLimits {
            window: WindowLimits {
                max_segments: 2,
                ..LIMITS
            },
            ..STREAM_LIMITS
        });
        stream.declare(rung("720p", 2_000_000)).unwrap();
        stream.declare(rung("360p", 800_000)).unwrap();
        push_segments(&mut stream, "720p", 1, 0);
        push_segments(&mut stream, "360p", 1, 0);
        stream.shed_rendition("360p", "cpu", 0).unwrap();
        for msn in 1..7 {
            for part in 0..4 {
                let mut meta = meta(msn, part, 4);
                meta.discontinuity = msn == 3 && part == 0;
                stream
                    .push_part("720p", &meta, part_bytes(msn, part), 0)
                    .unwrap();
            }
        }
        stream.declare(rung("360p", 800_000)).unwrap();
        // Five numbers skipped, more than the window's two segments: not gaps, a restart.
        stream
            .push_part("360p", &meta(6, 0, 4), part_bytes(6, 0), 0)
            .unwrap();
        let resumed = stream.media_playlist("360p").unwrap();
        assert_eq!(resumed.media_sequence, 6);
        assert_eq!(
            resumed.segments.iter().map(|s| s.msn).collect::<Vec<_>>(),
            vec![6]
        );
        assert!(!resumed.segments[0].discontinuity);
        // RFC 8216bis §4.4.3.3: segment 6 in the same discontinuity sequence as 720p's.
        let sibling = stream.media_playlist("720p").unwrap();
        let sibling_at_6 = sibling.discontinuity_sequence
            + sibling
                .segments
                .iter()
                .filter(|s| s.msn <= 6 && s.discontinuity)
                .count() as u64;
        assert_eq!(sibling_at_6, 1);
        assert_eq!(resumed.discontinuity_sequence, sibling_at_6);
        assert!(
            stream
                .master_playlist()
                .unwrap()
                .variants
                .iter()
                .any(|v| v.uri == "360p/index.m3u8")
        );
    }

    #[test]
    fn an_unhinted_video_rung_holds_the_master_until_its_first_segment() {
        let mut stream = StreamCore::new(STREAM_LIMITS);
        // The passthrough: no encoder rate to go by.
        stream
            .declare(descriptor("source", RenditionKind::Video))
            .unwrap();
        stream.declare(rung("360p", 800_000)).unwrap();
        push_segments(&mut stream, "360p", 0, 1);
        stream
            .push_init("source", 0, Bytes::from_static(b"init"))
            .unwrap();
        // Its first part is mostly the IDR frame: 8000 bit/s over 0.25 s, 32 kbit/s.
        let idr = Bytes::from(vec![0u8; 1000]);
        stream.push_part("source", &meta(0, 0, 4), idr, 0).unwrap();
        assert!(!stream.master_ready());
        // Not even once a hinted rung has a complete segment.
        for part in 1..4 {
            stream
                .push_part("360p", &meta(0, part, 4), part_bytes(0, part), 0)
                .unwrap();
        }
        assert!(!stream.master_ready());
        for part in 1..4 {
            stream
                .push_part("source", &meta(0, part, 4), part_bytes(0, part), 0)
                .unwrap();
        }
        assert!(stream.master_ready());
        let master = stream.master_playlist().unwrap();
        let source = master
            .variants
            .iter()
            .find(|v| v.uri == "source/index.m3u8")
            .unwrap();
        // RFC 8216bis §4.4.6.2: the segment's rate, (1000 + 3 × 5) bytes over 1 s.
        assert_eq!(source.bandwidth, 8_120);
    }

    #[test]
    fn the_thumbnail_is_kept_per_session() {
        let mut stream = stream_with_video_and_audio();
        assert_eq!(stream.thumbnail(), None);
        stream.set_thumbnail(Bytes::from_static(b"\xFF\xD8\xFFone"));
        stream.set_thumbnail(Bytes::from_static(b"\xFF\xD8\xFFtwo"));
        assert_eq!(
            stream.thumbnail(),
            Some(Bytes::from_static(b"\xFF\xD8\xFFtwo"))
        );
        stream.end();
        stream
            .declare(descriptor("video", RenditionKind::Video))
            .unwrap();
        assert_eq!(stream.thumbnail(), None, "a new session has no poster yet");
    }

    #[test]
    fn iframe_playlists_are_for_video_renditions() {
        let mut stream = stream_with_video_and_audio();
        push_segments(&mut stream, "video", 2, 1);
        push_segments(&mut stream, "audio", 2, 0);
        assert_eq!(stream.iframe_playlist("audio"), None);
        assert_eq!(stream.iframe_playlist("nope"), None);
        assert_eq!(stream.iframe_playlist("video").unwrap().entries.len(), 2);
    }
}
