//! One live stream (an event's current broadcast): its renditions' windows side by side,
//! the master playlist across them, and the status the control plane shows. No I/O.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use floodlight_archive::EventArchiveStatus;
use floodlight_media::PlaybackAccess;
use floodlight_media::playlist::{DeltaUpdate, IFramePlaylist, MediaPlaylist};
use floodlight_media::push::{LastPart, PartMeta, RenditionDescriptor, RenditionKind};
use serde::Serialize;

use crate::access::UriEnds;
use crate::resource;
pub(crate) mod master;

use crate::window::{
    CompletedSegment, OverTarget, PushError, Pushed, RenditionWindow, WindowLimits,
    target_duration_for,
};

/// GROUP-ID of the audio renditions in the master playlist (RFC 8216bis §4.4.6.1).
pub(crate) const AUDIO_GROUP: &str = "audio";
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
    /// The event's archive, when one is configured: `ok`, or `degraded` with the MSN
    /// ranges missing from it (its `Display` is the one-line form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<EventArchiveStatus>,
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

    /// The segments completed since the last call, with their rendition's name.
    pub(crate) fn take_completed(&mut self) -> Vec<(String, CompletedSegment)> {
        self.renditions
            .iter_mut()
            .flat_map(|window| {
                let name = window.descriptor().name.clone();
                window
                    .take_completed()
                    .into_iter()
                    .map(move |segment| (name.clone(), segment))
            })
            .collect()
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
            archive: None,
        }
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
mod tests;
