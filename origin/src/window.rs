//! The live window of one rendition, without I/O: pushed parts in, playlist models, bytes
//! and blocking decisions out. Time is media time (the sum of part durations), never the
//! wall clock, so every replica fed the same parts makes the same decisions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use floodlight_media::playlist::{
    IFrameEntry, IFramePlaylist, MediaPlaylist, PartEntry, RenditionReport, SegmentEntry,
    ServerControl,
};
use floodlight_media::push::{LastPart, PartMeta, RenditionDescriptor, RenditionKind};

use crate::resource;

/// RFC 8216bis §6.2.2: EXT-X-PART tags SHOULD be removed once they are more than three
/// target durations from the end of the playlist. Measured from the end of their parent
/// segment, all of its tags together, and never for the segment in progress: its parts
/// are the live edge however long it runs.
const PART_LISTED_TARGET_DURATIONS: f64 = 3.0;
/// RFC 8216bis §6.2.2: clients MUST be able to download a part for at least three target
/// durations after its EXT-X-PART tag left the playlist.
const PART_FETCHABLE_AFTER_DELISTING_TARGET_DURATIONS: f64 = 3.0;
/// RFC 8216bis §6.2.2: a segment may not be removed if the playlist would then be shorter
/// than three target durations.
const MIN_PLAYLIST_TARGET_DURATIONS: f64 = 3.0;
/// RFC 8216bis §4.4.3.8: PART-HOLD-BACK is at least three times PART-TARGET.
const PART_HOLD_BACK_PART_TARGETS: f64 = 3.0;
/// RFC 8216bis §4.4.3.8: CAN-SKIP-UNTIL is at least six target durations.
const SKIP_UNTIL_TARGET_DURATIONS: f64 = 6.0;
/// A part longer than this many segment targets is a pusher's error (a part is a fraction
/// of a segment); refused so it cannot stretch segments, playlists and blocking timeouts.
const MAX_PART_SEGMENT_TARGETS: f64 = 2.0;
/// BANDWIDTH before a rendition has a complete segment, from the bit rate it is encoded at
/// (`bandwidth_hint_bps`): the rate plus this many percent. A rung's encoder (CBR or capped VBR
/// with a VBV buffer) keeps segment peaks near its rate, and Apple's mediastreamvalidator
/// tolerates a measured peak up to 10% over the declared BANDWIDTH, so hint × 1.1 covers
/// peaks up to 1.21 × the rate. A single part's rate would not do: the first part holds
/// the IDR frame and overstates the rung several times over.
const BANDWIDTH_HINT_HEADROOM_PERCENT: u64 = 10;

/// Where a part sits in the stream: its segment's media sequence number and its index in
/// that segment. Ordered as the stream plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PartPosition {
    pub(crate) msn: u64,
    pub(crate) part: u32,
}

/// What bounds the window, from the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowLimits {
    pub(crate) dvr_window_secs: f64,
    /// Segments in the playlist, and separately in the unlisted tail.
    pub(crate) max_segments: usize,
    pub(crate) max_init_versions: usize,
}

/// Why a push was refused. The transcoder gets the message verbatim.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub(crate) enum PushError {
    #[error("invalid rendition descriptor: {0}")]
    InvalidDescriptor(String),
    #[error("part {msn}.{part}: duration {duration} s {reason}")]
    InvalidDuration {
        msn: u64,
        part: u32,
        duration: f64,
        reason: String,
    },
    #[error("no rendition {0:?} was declared in this stream; push its descriptor first")]
    UnknownRendition(String),
    #[error(
        "the stream already has the maximum of {max} renditions (origin.max_renditions_per_stream)"
    )]
    TooManyRenditions { max: usize },
    #[error(
        "segment_target_ms {segment_target_ms} needs EXT-X-TARGETDURATION {wanted}, but the stream declared {target_duration}, which MUST NOT change (RFC 8216bis §6.2.1)"
    )]
    TargetDurationChanged {
        target_duration: u32,
        wanted: u32,
        segment_target_ms: u32,
    },
    #[error(
        "init version {version} would exceed the {max} init versions a rendition keeps (origin.max_init_versions_per_rendition), and the segments using the older ones are still within three target durations of the edge"
    )]
    TooManyInitVersions { version: u32, max: usize },
    #[error(
        "part {msn}.{part} uses init version {version}, which was not pushed (or is no longer kept)"
    )]
    UnknownInitVersion { msn: u64, part: u32, version: u32 },
    #[error("part {msn}.{part}: the first part of a rendition must start a segment (part 0)")]
    NotSegmentStart { msn: u64, part: u32 },
    #[error(
        "part {msn}.{part} is out of order: the last part was {last_msn}.{last_part}, so the next must be {expected}"
    )]
    OutOfOrder {
        msn: u64,
        part: u32,
        last_msn: u64,
        last_part: u32,
        expected: String,
    },
    #[error("part {msn}.{part} was already pushed with different bytes")]
    PartConflict { msn: u64, part: u32 },
    #[error("init version {version} was already pushed with different bytes")]
    InitConflict { version: u32 },
    #[error("init version {version} is older than the latest pushed version {latest}")]
    InitVersionBackwards { version: u32, latest: u32 },
    #[error(
        "PART-TARGET is fixed for a stream's life (RFC 8216bis §4.4.3.7): was {was} ms, now {now} ms"
    )]
    PartTargetChanged { was: u32, now: u32 },
    #[error("a rendition cannot change kind")]
    KindChanged,
    #[error("the stream has ended; push a rendition descriptor to start a new session")]
    Ended,
    #[error(
        "part {msn}.{part}: sync_sample_bytes {sync_sample_bytes} must be between 1 and the part's {len} bytes"
    )]
    InvalidSyncSampleBytes {
        msn: u64,
        part: u32,
        sync_sample_bytes: u32,
        len: usize,
    },
    #[error("the rendition was shed ({reason}); declare it again to resume it at the next segment")]
    Shed { reason: String },
}

/// The answer to "is what the client waits for there yet?" (RFC 8216bis §6.2.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Awaited {
    /// Answer now.
    Ready,
    /// Block until the window changes.
    Wait,
    /// Beyond the advance limits: refuse.
    TooFar,
}

/// The answer to a request for stored bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lookup {
    Found(Bytes),
    /// The preload-hinted (or nearly next) part: block until it lands.
    Wait,
    NotFound,
    /// It existed but aged out of the window.
    Gone,
}

/// Outcome of an accepted push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Stored,
    /// A retry of what is already stored, byte for byte: nothing changed.
    Duplicate,
}

/// A complete segment whose EXTINF, rounded, exceeds the fixed target duration
/// (RFC 8216bis §4.4.3.1): the publisher's keyframe interval is longer than the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OverTarget {
    pub(crate) msn: u64,
    pub(crate) duration: f64,
}

/// Bit rates measured over complete segments (RFC 8216bis §4.4.6.2 BANDWIDTH is the peak
/// segment bit rate, AVERAGE-BANDWIDTH the average). The peak counts only segments the
/// packager completed: one cut short (a transcoder taken over mid-segment, a reconnect, the
/// end) is mostly its IDR frame, and would overstate the rendition's peak.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct BitrateStats {
    peak_bps: f64,
    /// The peak over every complete segment, cut short or not: used while no whole one.
    any_peak_bps: f64,
    last_bps: f64,
    total_bits: f64,
    total_secs: f64,
}

impl BitrateStats {
    fn add(&mut self, bits: f64, secs: f64, whole: bool) {
        let bps = bits / secs;
        if whole {
            self.peak_bps = self.peak_bps.max(bps);
        }
        self.any_peak_bps = self.any_peak_bps.max(bps);
        self.last_bps = bps;
        self.total_bits += bits;
        self.total_secs += secs;
    }

    fn bandwidth(&self) -> Option<Bandwidth> {
        (self.total_secs > 0.0).then(|| Bandwidth {
            peak: if self.peak_bps > 0.0 {
                self.peak_bps
            } else {
                self.any_peak_bps
            }
            .ceil() as u64,
            average: (self.total_bits / self.total_secs).ceil() as u64,
            current: self.last_bps.ceil() as u64,
        })
    }
}

/// Bit rates of one rendition, bits/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bandwidth {
    pub(crate) peak: u64,
    pub(crate) average: u64,
    /// The latest complete segment's (or, before one, the parts so far).
    pub(crate) current: u64,
}

#[derive(Debug)]
struct StoredPart {
    duration: f64,
    independent: bool,
    bytes: Bytes,
}

#[derive(Debug)]
struct Segment {
    msn: u64,
    /// Media seconds from the rendition's first part to this segment's first part.
    start: f64,
    duration: f64,
    init_version: u32,
    program_date_time_ms: Option<i64>,
    discontinuity: bool,
    parts: Vec<StoredPart>,
    /// Bytes from the segment's start through the end of its first sync sample
    /// (`PartMeta.sync_sample_bytes` of part 0): the I-frame playlist's byte range.
    sync_sample_bytes: Option<u32>,
    /// Set once complete: exactly its parts concatenated; the parts are then slices of it.
    bytes: Option<Bytes>,
    /// Set when it leaves the playlist: the edge (media seconds) up to which it stays
    /// fetchable (RFC 8216bis §6.2.2).
    available_until: Option<f64>,
    /// A number the stream skipped (EXT-X-GAP, RFC 8216bis §4.4.4.7): no media, no parts.
    gap: bool,
}

impl Segment {
    fn byte_len(&self) -> usize {
        self.parts.iter().map(|p| p.bytes.len()).sum()
    }

    fn end(&self) -> f64 {
        self.start + self.duration
    }

    fn in_progress(&self) -> bool {
        self.bytes.is_none()
    }

    /// The byte range (from the start) of the segment's first sync sample: what the
    /// packager measured, or else its whole first part when that starts with a sync sample
    /// (INDEPENDENT, RFC 8216bis §4.4.4.9) and so decodes on its own (a pusher that does
    /// not send `sync_sample_bytes`). `None` when the segment has no I-frame to address.
    fn iframe_bytes(&self) -> Option<u64> {
        self.sync_sample_bytes.map(u64::from).or_else(|| {
            self.parts
                .first()
                .filter(|p| p.independent)
                .map(|p| p.bytes.len() as u64)
        })
    }

    /// Joins the parts into the segment body and re-points every part at its slice of it,
    /// so a complete segment's bytes are held once.
    fn complete(&mut self) {
        if self.bytes.is_some() {
            return;
        }
        let mut body = BytesMut::with_capacity(self.byte_len());
        for part in &self.parts {
            body.extend_from_slice(&part.bytes);
        }
        let body = body.freeze();
        let mut offset = 0;
        for part in &mut self.parts {
            let len = part.bytes.len();
            part.bytes = body.slice(offset..offset + len);
            offset += len;
        }
        self.bytes = Some(body);
    }
}

/// One rendition's live window.
#[derive(Debug)]
pub(crate) struct RenditionWindow {
    descriptor: RenditionDescriptor,
    limits: WindowLimits,
    inits: BTreeMap<u32, Bytes>,
    /// Oldest first. The first `unlisted` left the playlist but stay fetchable for their
    /// Availability Duration (RFC 8216bis §6.2.2); the rest are the playlist's segments,
    /// the last possibly in progress.
    segments: VecDeque<Segment>,
    unlisted: usize,
    /// Media seconds from the first part to the end of the last one: the live edge.
    edge: f64,
    /// EXT-X-TARGETDURATION, fixed by the stream (RFC 8216bis §6.2.1).
    target_duration: u32,
    /// The longest the playlist has been, media seconds: the upper bound of "the longest
    /// playlist a segment appeared in" (RFC 8216bis §6.2.2 Availability Duration).
    longest_playlist: f64,
    discontinuity_sequence: u64,
    last: Option<LastPart>,
    /// Wall clock (ms since the epoch, passed in) of the last stored part.
    last_push_ms: Option<i64>,
    bitrate: BitrateStats,
    /// The same over each segment's I-frame alone, per segment duration (RFC 8216bis
    /// §4.4.6.3: an I-frame playlist's BANDWIDTH).
    iframe_bitrate: BitrateStats,
    ended: bool,
    /// Reopened after being shed (declared again) and no part stored since: it stays out
    /// of the master playlist and the rendition reports until it has one, so players are
    /// not sent to a rung that has nothing new to play.
    resuming: bool,
    segments_over_target: u64,
    first_over_target: Option<OverTarget>,
}

impl RenditionWindow {
    /// `target_duration` is the stream's, fixed when its first rendition was declared.
    pub(crate) fn new(
        descriptor: RenditionDescriptor,
        limits: WindowLimits,
        target_duration: u32,
    ) -> Self {
        RenditionWindow {
            descriptor,
            limits,
            inits: BTreeMap::new(),
            segments: VecDeque::new(),
            unlisted: 0,
            edge: 0.0,
            target_duration: target_duration.max(1),
            longest_playlist: 0.0,
            discontinuity_sequence: 0,
            last: None,
            last_push_ms: None,
            bitrate: BitrateStats::default(),
            iframe_bitrate: BitrateStats::default(),
            ended: false,
            resuming: false,
            segments_over_target: 0,
            first_over_target: None,
        }
    }

    pub(crate) fn descriptor(&self) -> &RenditionDescriptor {
        &self.descriptor
    }

    pub(crate) fn target_duration(&self) -> u32 {
        self.target_duration
    }

    pub(crate) fn last(&self) -> Option<&LastPart> {
        self.last.as_ref()
    }

    pub(crate) fn last_push_ms(&self) -> Option<i64> {
        self.last_push_ms
    }

    /// Complete segments whose rounded EXTINF exceeded the target duration, and the first.
    pub(crate) fn segments_over_target(&self) -> u64 {
        self.segments_over_target
    }

    pub(crate) fn first_over_target(&self) -> Option<OverTarget> {
        self.first_over_target
    }

    /// A descriptor pushed again (a transcoder restart or takeover): PART-TARGET and kind
    /// are fixed, the rest may change (the stream checks the target duration).
    pub(crate) fn update_descriptor(
        &mut self,
        descriptor: RenditionDescriptor,
    ) -> Result<(), PushError> {
        if descriptor.part_target_ms != self.descriptor.part_target_ms {
            return Err(PushError::PartTargetChanged {
                was: self.descriptor.part_target_ms,
                now: descriptor.part_target_ms,
            });
        }
        if descriptor.kind != self.descriptor.kind {
            return Err(PushError::KindChanged);
        }
        self.descriptor = descriptor;
        Ok(())
    }

    /// Stores an init segment version. Versions are immutable and only move forward; at
    /// most `max_init_versions` are kept (those the stored segments use, and the latest).
    pub(crate) fn push_init(&mut self, version: u32, bytes: Bytes) -> Result<Pushed, PushError> {
        if self.ended {
            return Err(PushError::Ended);
        }
        if let Some(stored) = self.inits.get(&version) {
            return if *stored == bytes {
                Ok(Pushed::Duplicate)
            } else {
                Err(PushError::InitConflict { version })
            };
        }
        if let Some((&latest, _)) = self.inits.last_key_value()
            && version < latest
        {
            return Err(PushError::InitVersionBackwards { version, latest });
        }
        self.inits.insert(version, bytes);
        if !self.make_room_for_inits() {
            self.inits.remove(&version);
            return Err(PushError::TooManyInitVersions {
                version,
                max: self.limits.max_init_versions,
            });
        }
        Ok(Pushed::Stored)
    }

    /// Stores one part. Parts arrive in stream order: the next part of the current segment,
    /// or part 0 of the next segment (which also closes a segment the packager could not
    /// close itself, as when a publisher reconnects mid-segment), or part 0 of a later
    /// segment: the numbers between are listed as EXT-X-GAP
    /// ([`skipped_segments`](Self::skipped_segments)).
    pub(crate) fn push_part(
        &mut self,
        meta: &PartMeta,
        bytes: Bytes,
        now_ms: i64,
    ) -> Result<Pushed, PushError> {
        self.push(meta, bytes, now_ms, None)
    }

    /// Whether `meta` is a resumed rendition's first part, further ahead than gaps may
    /// fill ([`skipped_segments`](Self::skipped_segments)): the window restarts at it
    /// ([`push_part_restarting`](Self::push_part_restarting)) rather than refusing it.
    pub(crate) fn resumes_far_ahead(&self, meta: &PartMeta) -> bool {
        self.resuming
            && meta.part == 0
            && self.last.as_ref().is_some_and(|last| {
                meta.msn.saturating_sub(last.msn.saturating_add(1))
                    > self.limits.max_segments as u64
            })
    }

    /// [`push_part`](Self::push_part) for a rendition resuming far ahead: its old segments
    /// go, and the window starts again at `meta` with `discontinuity_sequence` (a
    /// sibling's, RFC 8216bis §4.4.3.3: the same segment number must have the same
    /// discontinuity sequence in every rendition, which players align renditions by).
    /// Nothing changes when the part is refused.
    pub(crate) fn push_part_restarting(
        &mut self,
        meta: &PartMeta,
        bytes: Bytes,
        now_ms: i64,
        discontinuity_sequence: u64,
    ) -> Result<Pushed, PushError> {
        self.push(meta, bytes, now_ms, Some(discontinuity_sequence))
    }

    /// The segment numbers `meta` would skip: it is part 0 of a segment past the next one.
    /// That happens when a transcoder takes over (it continues after the highest MSN of
    /// all renditions, and this one lagged behind) and in the packager's fallbacks. At most
    /// `max_segments` are skipped; a longer jump is out of order.
    pub(crate) fn skipped_segments(&self, meta: &PartMeta) -> Option<std::ops::Range<u64>> {
        let next = self.last.as_ref()?.msn.saturating_add(1);
        let skipped = meta.msn.checked_sub(next)?;
        (meta.part == 0 && skipped > 0 && skipped <= self.limits.max_segments as u64)
            .then_some(next..meta.msn)
    }

    /// The EXT-X-DISCONTINUITY-SEQUENCE a playlist of another rendition starting at
    /// segment `msn` (without an EXT-X-DISCONTINUITY tag of its own) must have to agree
    /// with this one (RFC 8216bis §4.4.3.3): the discontinuities before `msn`, and the one
    /// at `msn` itself. When this rendition has not reached `msn`, `discontinuity` says
    /// whether the packager marked one there. `None` with no segment listed.
    pub(crate) fn discontinuity_sequence_at(&self, msn: u64, discontinuity: bool) -> Option<u64> {
        let listed = self.segments.iter().skip(self.unlisted);
        let last = listed.clone().last()?;
        let before = listed.filter(|s| s.msn <= msn && s.discontinuity).count() as u64;
        let unseen = u64::from(discontinuity && last.msn < msn);
        Some(self.discontinuity_sequence + before + unseen)
    }

    /// Drops every segment (a shed rendition back far ahead: its old ones would be
    /// followed by more gaps than the window holds) and starts over with
    /// `discontinuity_sequence`. Init sections, bit rate history and the media clock stay.
    fn restart(&mut self, discontinuity_sequence: u64) {
        self.segments.clear();
        self.unlisted = 0;
        self.last = None;
        self.discontinuity_sequence = discontinuity_sequence;
        self.longest_playlist = 0.0;
    }

    /// Whether a shed rendition declared again has not stored a part since.
    pub(crate) fn is_resuming(&self) -> bool {
        self.resuming
    }

    fn push(
        &mut self,
        meta: &PartMeta,
        bytes: Bytes,
        now_ms: i64,
        restart: Option<u64>,
    ) -> Result<Pushed, PushError> {
        let (msn, part) = (meta.msn, meta.part);
        if self.ended {
            return Err(PushError::Ended);
        }
        self.check_duration(meta)?;
        if let Some(sync_sample_bytes) = meta.sync_sample_bytes
            && (sync_sample_bytes == 0 || sync_sample_bytes as usize > bytes.len())
        {
            return Err(PushError::InvalidSyncSampleBytes {
                msn,
                part,
                sync_sample_bytes,
                len: bytes.len(),
            });
        }
        if let Some(discontinuity_sequence) = restart {
            if part != 0 {
                return Err(PushError::NotSegmentStart { msn, part });
            }
            if !self.inits.contains_key(&meta.init_version) {
                return Err(PushError::UnknownInitVersion {
                    msn,
                    part,
                    version: meta.init_version,
                });
            }
            self.restart(discontinuity_sequence);
        }
        let position = PartPosition { msn, part };
        let starts_segment = match self.last.clone() {
            None if part == 0 => true,
            None => return Err(PushError::NotSegmentStart { msn, part }),
            Some(last) => {
                let last_position = PartPosition {
                    msn: last.msn,
                    part: last.part,
                };
                if position == last_position {
                    return match self.stored_part(position) {
                        Some(stored) if stored.bytes == bytes => Ok(Pushed::Duplicate),
                        _ => Err(PushError::PartConflict { msn, part }),
                    };
                }
                let next_segment = PartPosition {
                    msn: last.msn.saturating_add(1),
                    part: 0,
                };
                let next_part = PartPosition {
                    msn: last.msn,
                    part: last.part.saturating_add(1),
                };
                if position == next_segment || self.skipped_segments(meta).is_some() {
                    true
                } else if position == next_part && !last.ends_segment {
                    false
                } else {
                    let expected = if last.ends_segment {
                        format!("{}.0", next_segment.msn)
                    } else {
                        format!(
                            "{}.{} or {}.0",
                            next_part.msn, next_part.part, next_segment.msn
                        )
                    };
                    return Err(PushError::OutOfOrder {
                        msn,
                        part,
                        last_msn: last.msn,
                        last_part: last.part,
                        expected,
                    });
                }
            }
        };
        if !self.inits.contains_key(&meta.init_version) {
            return Err(PushError::UnknownInitVersion {
                msn,
                part,
                version: meta.init_version,
            });
        }

        if starts_segment {
            // A segment still in progress here was cut short: the packager that wrote it
            // stopped (a transcoder taken over, a publisher reconnect). It closes as it is.
            self.complete_current_segment(false);
            self.push_gap(msn, meta.program_date_time_ms);
            self.segments.push_back(Segment {
                msn,
                start: self.edge,
                duration: 0.0,
                init_version: meta.init_version,
                program_date_time_ms: meta.program_date_time_ms,
                // After a restart the segment opens the playlist: its discontinuity is
                // counted in the sibling's discontinuity sequence instead.
                discontinuity: meta.discontinuity && restart.is_none(),
                parts: Vec::new(),
                sync_sample_bytes: meta.sync_sample_bytes.filter(|_| meta.independent),
                bytes: None,
                available_until: None,
                gap: false,
            });
        }
        let Some(segment) = self.segments.back_mut() else {
            // Unreachable by construction: a segment was pushed above or is in progress.
            return Err(PushError::NotSegmentStart { msn, part });
        };
        segment.parts.push(StoredPart {
            duration: meta.duration,
            independent: meta.independent,
            bytes,
        });
        segment.duration += meta.duration;
        self.edge += meta.duration;
        self.last = Some(LastPart {
            msn,
            part,
            ends_segment: meta.ends_segment,
            init_version: meta.init_version,
        });
        self.last_push_ms = Some(now_ms);
        self.resuming = false;
        if meta.ends_segment {
            self.complete_current_segment(true);
        }
        self.evict();
        Ok(Pushed::Stored)
    }

    /// Lists the segment numbers between the last segment and segment `next_msn` as
    /// EXT-X-GAP (RFC 8216bis §4.4.4.7): no media, the previous segment's init section.
    /// The numbers stay consecutive, so every rendition keeps the same MSN at the same
    /// time (players switch renditions by it).
    ///
    /// Their timing comes from this rendition alone, so every replica fed the same parts
    /// lists the same gaps: together they last from the end of the previous segment to
    /// `next_pdt_ms`, the next segment's EXT-X-PROGRAM-DATE-TIME (none when the previous
    /// segment already reached it, as a rung without a keyframe at another rung's cut
    /// has one long segment), spread evenly over the numbers, each at most the target
    /// duration (RFC 8216bis §4.4.3.1); beyond that the next segment's date jumps ahead.
    /// Without dates on both sides, each lasts the segment target. Each gap's date follows
    /// on from the one before (RFC 8216bis §4.4.4.6: players map segments to the clock).
    fn push_gap(&mut self, next_msn: u64, next_pdt_ms: Option<i64>) {
        let Some(previous) = self.segments.back() else {
            return;
        };
        let Some(count) = next_msn.checked_sub(previous.msn.saturating_add(1)) else {
            return;
        };
        if count == 0 {
            return;
        }
        let previous_end_ms = previous
            .program_date_time_ms
            .map(|pdt| pdt.saturating_add((previous.duration * 1000.0).round() as i64));
        let each = match previous_end_ms.zip(next_pdt_ms) {
            Some((end, next)) => next.saturating_sub(end).max(0) as f64 / 1000.0 / count as f64,
            None => f64::from(self.descriptor.segment_target_ms) / 1000.0,
        };
        let duration = each.min(f64::from(self.target_duration));
        let init_version = previous.init_version;
        let first = next_msn - count;
        for msn in first..next_msn {
            let program_date_time_ms = self.segments.back().and_then(|previous| {
                Some(previous.program_date_time_ms? + (previous.duration * 1000.0).round() as i64)
            });
            self.segments.push_back(Segment {
                msn,
                start: self.edge,
                duration,
                init_version,
                program_date_time_ms,
                discontinuity: false,
                parts: Vec::new(),
                sync_sample_bytes: None,
                bytes: Some(Bytes::new()),
                available_until: None,
                gap: true,
            });
            self.edge += duration;
        }
    }

    /// A part's duration is a positive number of seconds, and no longer than twice the
    /// segment target: a pusher cannot stretch segments (and with them the blocking
    /// timeouts and retention, all in target durations) by claiming long parts.
    fn check_duration(&self, meta: &PartMeta) -> Result<(), PushError> {
        let max = MAX_PART_SEGMENT_TARGETS * f64::from(self.descriptor.segment_target_ms) / 1000.0;
        let reason = if !(meta.duration.is_finite() && meta.duration > 0.0) {
            "is not a positive number of seconds".to_string()
        } else if meta.duration > max {
            format!("exceeds {MAX_PART_SEGMENT_TARGETS} × the rendition's segment target ({max} s)")
        } else {
            return Ok(());
        };
        Err(PushError::InvalidDuration {
            msn: meta.msn,
            part: meta.part,
            duration: meta.duration,
            reason,
        })
    }

    /// The stream ended for good: close the segment in progress so the playlist ends on
    /// complete segments, and stop waiting for anything.
    pub(crate) fn end(&mut self) {
        self.complete_current_segment(false);
        if let Some(last) = &mut self.last {
            last.ends_segment = true;
        }
        self.ended = true;
    }

    /// `whole`: the packager ended it (`ends_segment`), rather than it being cut short.
    fn complete_current_segment(&mut self, whole: bool) {
        let Some(segment) = self.segments.back_mut() else {
            return;
        };
        if segment.bytes.is_some() {
            return;
        }
        segment.complete();
        // RFC 8216bis §4.4.3.1: every EXTINF rounded to the nearest integer is ≤ the target
        // duration, and §6.2.1: the target duration MUST NOT change. A publisher's long GOP
        // can still overshoot the headroom the target duration has; it is counted, and the
        // target duration kept (players tolerate a long segment better than a changed
        // target duration).
        if segment.duration.round() > f64::from(self.target_duration) {
            self.segments_over_target += 1;
            self.first_over_target.get_or_insert(OverTarget {
                msn: segment.msn,
                duration: segment.duration,
            });
        }
        let bits = segment.byte_len() as f64 * 8.0;
        self.bitrate.add(bits, segment.duration, whole);
        if let Some(iframe_bytes) = segment.iframe_bytes() {
            self.iframe_bitrate
                .add(iframe_bytes as f64 * 8.0, segment.duration, whole);
        }
    }

    /// A shed rendition taken back into the ladder (declared again): it continues at the
    /// next segment, as after a takeover.
    pub(crate) fn reopen(&mut self) {
        self.ended = false;
        self.resuming = true;
    }

    fn min_playlist(&self) -> f64 {
        MIN_PLAYLIST_TARGET_DURATIONS * f64::from(self.target_duration)
    }

    /// Media seconds the playlist spans, from its first segment to the edge.
    fn playlist_duration(&self) -> f64 {
        self.segments
            .get(self.unlisted)
            .map_or(0.0, |first| self.edge - first.start)
    }

    /// The playlist's oldest segment may leave it: it is complete, and the playlist stays
    /// at least three target durations long without it (RFC 8216bis §6.2.2).
    fn can_unlist_front(&self) -> bool {
        self.segments.get(self.unlisted).is_some_and(|front| {
            !front.in_progress() && self.edge - front.end() >= self.min_playlist()
        })
    }

    /// Removes the playlist's oldest segment from the playlist. RFC 8216bis §6.2.2: it stays
    /// fetchable from when it first appeared (its URI was added when it completed) for its
    /// Availability Duration: its duration plus the longest playlist it appeared in.
    fn unlist_front(&mut self) {
        let longest = self.longest_playlist;
        let Some(front) = self.segments.get_mut(self.unlisted) else {
            return;
        };
        // RFC 8216bis §6.2.2: removing a segment that carries EXT-X-DISCONTINUITY
        // increments EXT-X-DISCONTINUITY-SEQUENCE.
        if front.discontinuity {
            self.discontinuity_sequence += 1;
        }
        front.available_until = Some(front.end() + front.duration + longest);
        self.unlisted += 1;
    }

    /// Unlists segments behind the DVR window (or over the segment cap), never leaving a
    /// playlist shorter than three target durations (RFC 8216bis §6.2.2), then drops the
    /// unlisted ones whose availability ended (or over the cap).
    fn evict(&mut self) {
        while self.can_unlist_front() {
            let Some(front) = self.segments.get(self.unlisted) else {
                break;
            };
            let too_many = self.segments.len() - self.unlisted > self.limits.max_segments;
            if !(too_many || self.edge - front.end() >= self.limits.dvr_window_secs) {
                break;
            }
            self.unlist_front();
        }
        // Measured as served: after this push's unlisting.
        self.longest_playlist = self.longest_playlist.max(self.playlist_duration());
        let mut dropped = false;
        while let Some(front) = self.segments.front()
            && self.unlisted > 0
        {
            let expired = front.available_until.is_some_and(|until| self.edge > until);
            if !(expired || self.unlisted > self.limits.max_segments) {
                break;
            }
            self.drop_front();
            dropped = true;
        }
        if dropped {
            self.prune_inits();
        }
    }

    fn drop_front(&mut self) {
        if self.unlisted > 0 && self.segments.pop_front().is_some() {
            self.unlisted -= 1;
        }
    }

    /// Keeps the init versions a stored segment uses, the latest, and versions newer than
    /// any in use (pushed ahead of their first part). Versions only move forward, so an
    /// unused one older than a used one will never be used. Over the cap, unused versions
    /// go first, oldest first.
    fn prune_inits(&mut self) {
        let used: BTreeSet<u32> = self.segments.iter().map(|s| s.init_version).collect();
        let newest_used = used.last().copied();
        let latest = self.inits.last_key_value().map(|(&v, _)| v);
        self.inits.retain(|version, _| {
            used.contains(version)
                || Some(*version) == latest
                || newest_used.is_none_or(|newest| *version > newest)
        });
        while self.inits.len() > self.limits.max_init_versions {
            let Some(unused) = self
                .inits
                .keys()
                .copied()
                .find(|v| !used.contains(v) && Some(*v) != latest)
            else {
                break;
            };
            self.inits.remove(&unused);
        }
    }

    /// Brings the kept init versions within the cap: unused versions go, then the oldest
    /// segments (the unlisted tail, then the playlist's, down to three target durations).
    /// `false` if the segments that use the versions cannot go.
    fn make_room_for_inits(&mut self) -> bool {
        loop {
            self.prune_inits();
            if self.inits.len() <= self.limits.max_init_versions {
                return true;
            }
            if self.unlisted > 0 {
                self.drop_front();
            } else if self.can_unlist_front() {
                self.unlist_front();
            } else {
                return false;
            }
        }
    }

    fn stored_part(&self, position: PartPosition) -> Option<&StoredPart> {
        self.segment(position.msn)?
            .parts
            .get(usize::try_from(position.part).ok()?)
    }

    /// A stored segment, listed or not.
    fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    /// The part the packager will push next: the preload hint (RFC 8216bis §4.4.5.3).
    fn next_expected(&self) -> Option<PartPosition> {
        let last = self.last.clone()?;
        Some(if last.ends_segment {
            PartPosition {
                msn: last.msn.saturating_add(1),
                part: 0,
            }
        } else {
            PartPosition {
                msn: last.msn,
                part: last.part.saturating_add(1),
            }
        })
    }

    /// Whether a blocking playlist reload for `_HLS_msn=msn[&_HLS_part=part]` can be
    /// answered (RFC 8216bis §6.2.5.2).
    pub(crate) fn awaited(&self, msn: u64, part: Option<u32>) -> Awaited {
        // §6.2.5.2: the server ignores _HLS_msn and _HLS_part once the playlist has ended.
        if self.ended {
            return Awaited::Ready;
        }
        let (Some(last), Some(next)) = (self.last.clone(), self.next_expected()) else {
            // Nothing pushed yet, so nothing to measure "too far" against: wait for it.
            return Awaited::Wait;
        };
        // §6.2.5.2: more than two past the last complete segment is too far. The next
        // expected part's segment is the one after the last complete one.
        if msn > next.msn.saturating_add(1) {
            return Awaited::TooFar;
        }
        match part {
            None if last.msn > msn || (last.msn == msn && last.ends_segment) => Awaited::Ready,
            None => Awaited::Wait,
            Some(part) => {
                // §6.2.5.2: a part index past the last part of a complete segment means
                // part 0 of the next segment; the position order gives exactly that.
                let requested = PartPosition { msn, part };
                if requested
                    <= (PartPosition {
                        msn: last.msn,
                        part: last.part,
                    })
                {
                    return Awaited::Ready;
                }
                // The fewest parts between the last one and the requested one.
                let ahead = if msn == last.msn {
                    u64::from(part.saturating_sub(last.part))
                } else {
                    u64::from(part).saturating_add(1)
                };
                if ahead > advance_part_limit(self.descriptor.part_target_ms) {
                    Awaited::TooFar
                } else {
                    Awaited::Wait
                }
            }
        }
    }

    /// The bytes of one part. A part that does not exist yet but is the next expected (the
    /// preload hint), or close enough behind the advance limits that another replica may
    /// already have hinted it, is waited for (RFC 8216bis §6.2.6); anything further is not
    /// found.
    pub(crate) fn part(&self, position: PartPosition) -> Lookup {
        if let Some(segment) = self.segment(position.msn) {
            if let Some(stored) = usize::try_from(position.part)
                .ok()
                .and_then(|index| segment.parts.get(index))
            {
                return if self.part_fetchable(segment) {
                    Lookup::Found(stored.bytes.clone())
                } else {
                    Lookup::Gone
                };
            }
            if !segment.in_progress() {
                return Lookup::NotFound;
            }
        } else if self
            .segments
            .front()
            .is_some_and(|first| position.msn < first.msn)
        {
            return Lookup::Gone;
        }
        if self.ended || self.last.is_none() {
            return Lookup::NotFound;
        }
        match self.awaited(position.msn, Some(position.part)) {
            Awaited::Wait => Lookup::Wait,
            // Ready without the part stored: the stream moved past it (a segment closed
            // early at a reconnect), so it will never exist.
            Awaited::Ready | Awaited::TooFar => Lookup::NotFound,
        }
    }

    /// A complete segment: exactly its parts concatenated. Segments that left the playlist
    /// are served until their availability ends (RFC 8216bis §6.2.2).
    pub(crate) fn segment_bytes(&self, msn: u64) -> Lookup {
        match self.segment(msn) {
            Some(Segment { gap: true, .. }) => Lookup::NotFound,
            Some(Segment {
                bytes: Some(bytes), ..
            }) => Lookup::Found(bytes.clone()),
            Some(_) => Lookup::NotFound,
            None if self.segments.front().is_some_and(|first| msn < first.msn) => Lookup::Gone,
            None => Lookup::NotFound,
        }
    }

    /// An init segment version; `None` asks for the latest.
    pub(crate) fn init(&self, version: Option<u32>) -> Lookup {
        let latest = self.inits.last_key_value();
        let found = match version {
            Some(version) => self.inits.get(&version),
            None => latest.map(|(_, bytes)| bytes),
        };
        match (found, version, latest) {
            (Some(bytes), _, _) => Lookup::Found(bytes.clone()),
            (None, Some(version), Some((&latest, _))) if version < latest => Lookup::Gone,
            (None, _, _) => Lookup::NotFound,
        }
    }

    /// RFC 8216bis §6.2.2: the EXT-X-PART tags of a parent segment leave the playlist
    /// together, once the segment ended more than three target durations before the end of
    /// the playlist. Together, because a part is addressed by its index within its parent
    /// (`_HLS_part`, `{msn}.{part}`): dropping a segment's first parts alone would make a
    /// client count the rest from 0. The segment in progress keeps all of its parts (it is
    /// the live edge however long the publisher's GOP makes it).
    fn parts_listed(&self, segment: &Segment) -> bool {
        segment.in_progress()
            || self.edge - segment.end()
                <= PART_LISTED_TARGET_DURATIONS * f64::from(self.target_duration)
    }

    /// RFC 8216bis §6.2.2: a part stays fetchable three target durations after its tag
    /// left the playlist.
    fn part_fetchable(&self, segment: &Segment) -> bool {
        segment.in_progress()
            || self.edge - segment.end()
                <= (PART_LISTED_TARGET_DURATIONS + PART_FETCHABLE_AFTER_DELISTING_TARGET_DURATIONS)
                    * f64::from(self.target_duration)
    }

    /// The media playlist model of the window; URIs are relative to the playlist.
    pub(crate) fn media_playlist(&self, rendition_reports: Vec<RenditionReport>) -> MediaPlaylist {
        let part_target = f64::from(self.descriptor.part_target_ms) / 1000.0;
        let target_duration = f64::from(self.target_duration);
        let segments = self
            .segments
            .iter()
            .skip(self.unlisted)
            .map(|segment| SegmentEntry {
                msn: segment.msn,
                duration: segment.duration,
                uri: segment
                    .bytes
                    .as_ref()
                    .map(|_| resource::segment_uri(segment.msn)),
                program_date_time_ms: segment.program_date_time_ms,
                discontinuity: segment.discontinuity,
                map_uri: resource::init_uri(segment.init_version),
                gap: segment.gap,
                parts: if self.parts_listed(segment) {
                    (0u32..)
                        .zip(&segment.parts)
                        .map(|(index, part)| PartEntry {
                            duration: part.duration,
                            uri: resource::part_uri(PartPosition {
                                msn: segment.msn,
                                part: index,
                            }),
                            independent: part.independent,
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            })
            .collect();
        MediaPlaylist {
            target_duration: self.target_duration,
            part_target,
            server_control: ServerControl {
                can_block_reload: true,
                part_hold_back: PART_HOLD_BACK_PART_TARGETS * part_target,
                can_skip_until: Some(SKIP_UNTIL_TARGET_DURATIONS * target_duration),
            },
            media_sequence: self.media_sequence(),
            discontinuity_sequence: self.discontinuity_sequence,
            segments,
            preload_hint: if self.ended {
                None
            } else {
                self.next_expected().map(resource::part_uri)
            },
            rendition_reports,
            ended: self.ended,
        }
    }

    /// EXT-X-RENDITION-REPORT for this rendition, as another rendition's playlist lists it
    /// (RFC 8216bis §4.4.5.4).
    pub(crate) fn report(&self) -> Option<RenditionReport> {
        let last = self.last.clone()?;
        Some(RenditionReport {
            uri: resource::sibling_playlist_uri(&self.descriptor.name),
            last_msn: last.msn,
            last_part: last.part,
        })
    }

    /// Measured bit rates over complete segments. Before the first, from the descriptor's
    /// `bandwidth_hint_bps` (peak: [`BANDWIDTH_HINT_HEADROOM_PERCENT`] over it), or without one
    /// estimated from the parts so far. `None` before any part.
    pub(crate) fn bandwidth(&self) -> Option<Bandwidth> {
        if let Some(measured) = self.bitrate.bandwidth() {
            return Some(measured);
        }
        let segment = self.segments.back()?;
        if let Some(hint) = self.descriptor.bandwidth_hint_bps.filter(|&h| h > 0) {
            return Some(Bandwidth {
                peak: hint.saturating_add(
                    hint.saturating_mul(BANDWIDTH_HINT_HEADROOM_PERCENT)
                        .div_ceil(100),
                ),
                average: hint,
                current: hint,
            });
        }
        let bps = (segment.byte_len() as f64 * 8.0 / segment.duration).ceil() as u64;
        Some(Bandwidth {
            peak: bps,
            average: bps,
            current: bps,
        })
    }

    /// The bit rate a master playlist may declare: [`bandwidth`](Self::bandwidth), except
    /// that a video rendition without `bandwidth_hint_bps` (the `source` passthrough) has
    /// none before its first complete segment: its parts so far are mostly the IDR frame
    /// and overstate it several times, and players keep the first master playlist they
    /// load for the whole session. Audio parts are near constant bit rate.
    pub(crate) fn variant_bandwidth(&self) -> Option<Bandwidth> {
        let unknown = self.descriptor.kind == RenditionKind::Video
            && self.bitrate.bandwidth().is_none()
            && self.descriptor.bandwidth_hint_bps.is_none_or(|h| h == 0);
        if unknown { None } else { self.bandwidth() }
    }

    /// The bit rate of the I-frames alone (RFC 8216bis §4.4.6.3), over complete segments;
    /// before the first, the segment in progress's I-frame over the segment target. `None`
    /// before any part.
    pub(crate) fn iframe_bandwidth(&self) -> Option<Bandwidth> {
        if let Some(measured) = self.iframe_bitrate.bandwidth() {
            return Some(measured);
        }
        let segment = self.segments.back()?;
        let secs = f64::from(self.descriptor.segment_target_ms) / 1000.0;
        let bps = (segment.iframe_bytes()? as f64 * 8.0 / secs).ceil() as u64;
        Some(Bandwidth {
            peak: bps,
            average: bps,
            current: bps,
        })
    }

    /// Whether a complete segment is listed: the I-frame playlist has an entry.
    pub(crate) fn has_complete_segment(&self) -> bool {
        self.segments
            .iter()
            .skip(self.unlisted)
            .any(|s| !s.in_progress())
    }

    /// The I-frame playlist (RFC 8216bis §4.4.3.6): one entry per complete segment of the
    /// media playlist, with the same numbers, discontinuities and init sections, each the
    /// byte range of the segment's first sync sample. Segments start with one (ARCHITECTURE:
    /// "Segments start on a keyframe"), so the I-frame interval is the segment's duration,
    /// and the range starts at 0: a segment is its parts concatenated, the first part's
    /// moof first. A segment without an I-frame to address (a gap, or one not starting on
    /// a sync sample) keeps its entry as EXT-X-GAP (RFC 8216bis §4.4.4.7): dropping it
    /// would shift every later entry's number off EXT-X-MEDIA-SEQUENCE + its position.
    pub(crate) fn iframe_playlist(&self) -> IFramePlaylist {
        let listed = self.segments.iter().skip(self.unlisted);
        let entries = listed
            .filter(|segment| !segment.in_progress())
            .map(|segment| IFrameEntry {
                duration: segment.duration,
                uri: resource::segment_uri(segment.msn),
                byte_range: segment
                    .iframe_bytes()
                    .filter(|_| !segment.gap)
                    .map(|bytes| (bytes, 0)),
                program_date_time_ms: segment.program_date_time_ms,
                discontinuity: segment.discontinuity,
                map_uri: resource::init_uri(segment.init_version),
            })
            .collect();
        let media = self.media_sequence();
        IFramePlaylist {
            target_duration: self.target_duration,
            media_sequence: media,
            discontinuity_sequence: self.discontinuity_sequence,
            entries,
            ended: self.ended,
        }
    }

    /// EXT-X-MEDIA-SEQUENCE: the first listed segment's number, or with nothing listed the
    /// next segment's, so the sequence never goes back (RFC 8216bis §6.2.2).
    fn media_sequence(&self) -> u64 {
        self.segments.get(self.unlisted).map_or_else(
            || self.segments.back().map_or(0, |s| s.msn.saturating_add(1)),
            |s| s.msn,
        )
    }
}

/// EXT-X-TARGETDURATION for a segment target: `ceil(segment target × factor)` whole
/// seconds, at least 1. The product is formed on milliseconds, and a rounding error below a
/// microsecond does not push it to the next second.
pub(crate) fn target_duration_for(segment_target_ms: u32, factor: f64) -> u32 {
    let secs = f64::from(segment_target_ms) * factor / 1000.0;
    let rounded = (secs - 1e-9).ceil();
    if rounded.is_finite() {
        rounded.clamp(1.0, f64::from(u32::MAX)) as u32
    } else {
        u32::MAX
    }
}

/// RFC 8216bis §6.2.5.2: the Advance Part Limit is three divided by the part target
/// duration when that is under one second, three otherwise.
fn advance_part_limit(part_target_ms: u32) -> u64 {
    if part_target_ms == 0 {
        return 3;
    }
    if part_target_ms < 1000 {
        3000u64.div_ceil(u64::from(part_target_ms))
    } else {
        3
    }
}

#[cfg(test)]
pub(crate) mod tests {

    use super::*;

    pub(crate) fn descriptor(name: &str, kind: RenditionKind) -> RenditionDescriptor {
        RenditionDescriptor {
            name: name.to_string(),
            kind,
            codecs: match kind {
                RenditionKind::Video => "avc1.64001f".to_string(),
                RenditionKind::Audio => "mp4a.40.2".to_string(),
            },
            width: (kind == RenditionKind::Video).then_some(1280),
            height: (kind == RenditionKind::Video).then_some(720),
            frame_rate: (kind == RenditionKind::Video).then_some(30.0),
            channels: (kind == RenditionKind::Audio).then_some(2),
            part_target_ms: 250,
            segment_target_ms: 1000,
            access: Default::default(),
            bandwidth_hint_bps: None,
        }
    }

    pub(crate) const LIMITS: WindowLimits = WindowLimits {
        dvr_window_secs: 60.0,
        max_segments: 100,
        max_init_versions: 4,
    };

    /// The tests' 1 s segment target with a target duration factor of 1.
    pub(crate) const TARGET_DURATION: u32 = 1;

    pub(crate) fn empty_window(limits: WindowLimits) -> RenditionWindow {
        let mut window = RenditionWindow::new(
            descriptor("video", RenditionKind::Video),
            limits,
            TARGET_DURATION,
        );
        window.push_init(0, Bytes::from_static(b"init0")).unwrap();
        window
    }

    /// Pushes segments `msns` of 4 × 0.25 s parts.
    fn push_segments(window: &mut RenditionWindow, msns: std::ops::Range<u64>) {
        for msn in msns {
            for part in 0..4 {
                window
                    .push_part(&meta(msn, part, 4), part_bytes(msn, part), 0)
                    .unwrap();
            }
        }
    }

    pub(crate) fn meta(msn: u64, part: u32, parts_per_segment: u32) -> PartMeta {
        PartMeta {
            msn,
            part,
            duration: 0.25,
            independent: part == 0,
            init_version: 0,
            program_date_time_ms: (part == 0).then_some(1_700_000_000_000 + msn as i64 * 1000),
            discontinuity: false,
            ends_segment: part + 1 == parts_per_segment,
            last_frame_arrival_ms: 0,
            sync_sample_bytes: None,
        }
    }

    pub(crate) fn part_bytes(msn: u64, part: u32) -> Bytes {
        Bytes::from(format!("[{msn}.{part}]"))
    }

    /// A window with init version 0 and `segments` segments of 4 × 0.25 s parts pushed,
    /// then `extra_parts` parts of the next segment.
    pub(crate) fn window_with(segments: u64, extra_parts: u32) -> RenditionWindow {
        let mut window = empty_window(LIMITS);
        push_segments(&mut window, 0..segments);
        for part in 0..extra_parts {
            window
                .push_part(&meta(segments, part, 4), part_bytes(segments, part), 0)
                .unwrap();
        }
        window
    }

    #[test]
    fn a_segment_is_exactly_its_parts_concatenated() {
        let window = window_with(2, 1);
        assert_eq!(
            window.segment_bytes(1),
            Lookup::Found(Bytes::from_static(b"[1.0][1.1][1.2][1.3]"))
        );
        // The segment in progress is not a segment yet: only its parts are served.
        assert_eq!(window.segment_bytes(2), Lookup::NotFound);
        assert_eq!(
            window.part(PartPosition { msn: 1, part: 2 }),
            Lookup::Found(part_bytes(1, 2))
        );
    }

    #[test]
    fn parts_arrive_in_order_and_retries_are_idempotent() {
        let mut window = window_with(1, 2);
        // A retry of the last part with the same bytes changes nothing.
        assert_eq!(
            window.push_part(&meta(1, 1, 4), part_bytes(1, 1), 0),
            Ok(Pushed::Duplicate)
        );
        assert_eq!(
            window.push_part(&meta(1, 1, 4), Bytes::from_static(b"other"), 0),
            Err(PushError::PartConflict { msn: 1, part: 1 })
        );
        assert!(matches!(
            window.push_part(&meta(1, 0, 4), part_bytes(1, 0), 0),
            Err(PushError::OutOfOrder { .. })
        ));
        assert!(matches!(
            window.push_part(&meta(1, 3, 4), part_bytes(1, 3), 0),
            Err(PushError::OutOfOrder { .. })
        ));
        // Skipping more segment numbers than the window holds (fewer become gaps).
        let far = 3 + LIMITS.max_segments as u64;
        assert!(matches!(
            window.push_part(&meta(far, 0, 4), part_bytes(far, 0), 0),
            Err(PushError::OutOfOrder { .. })
        ));
        let mut unknown_init = meta(1, 2, 4);
        unknown_init.init_version = 7;
        assert_eq!(
            window.push_part(&unknown_init, part_bytes(1, 2), 0),
            Err(PushError::UnknownInitVersion {
                msn: 1,
                part: 2,
                version: 7
            })
        );
    }

    #[test]
    fn the_first_part_must_start_a_segment() {
        let mut window = empty_window(LIMITS);
        assert_eq!(
            window.push_part(&meta(5, 2, 4), part_bytes(5, 2), 0),
            Err(PushError::NotSegmentStart { msn: 5, part: 2 })
        );
        // Any MSN may start: a transcoder taking over continues the numbering.
        assert_eq!(
            window.push_part(&meta(5, 0, 4), part_bytes(5, 0), 0),
            Ok(Pushed::Stored)
        );
    }

    #[test]
    fn a_new_segment_closes_an_unfinished_one() {
        // A publisher reconnect: segment 1 stops after two parts, segment 2 follows with a
        // discontinuity.
        let mut window = window_with(1, 2);
        let mut resumed = meta(2, 0, 4);
        resumed.discontinuity = true;
        window.push_part(&resumed, part_bytes(2, 0), 0).unwrap();
        assert_eq!(
            window.segment_bytes(1),
            Lookup::Found(Bytes::from_static(b"[1.0][1.1]"))
        );
        let playlist = window.media_playlist(Vec::new());
        assert_eq!(playlist.segments[1].uri.as_deref(), Some("1.m4s"));
        assert_eq!(playlist.segments[1].duration, 0.5);
        assert!(playlist.segments[2].discontinuity);
        // The hinted 1.2 will never exist.
        assert_eq!(
            window.part(PartPosition { msn: 1, part: 2 }),
            Lookup::NotFound
        );
    }

    #[test]
    fn init_versions_are_immutable_and_move_forward() {
        let mut window = window_with(0, 0);
        assert_eq!(
            window.push_init(0, Bytes::from_static(b"init0")),
            Ok(Pushed::Duplicate)
        );
        assert_eq!(
            window.push_init(0, Bytes::from_static(b"x")),
            Err(PushError::InitConflict { version: 0 })
        );
        assert_eq!(
            window.push_init(2, Bytes::from_static(b"init2")),
            Ok(Pushed::Stored)
        );
        assert_eq!(
            window.push_init(1, Bytes::from_static(b"init1")),
            Err(PushError::InitVersionBackwards {
                version: 1,
                latest: 2
            })
        );
        assert_eq!(
            window.init(None),
            Lookup::Found(Bytes::from_static(b"init2"))
        );
        assert_eq!(
            window.init(Some(0)),
            Lookup::Found(Bytes::from_static(b"init0"))
        );
        assert_eq!(window.init(Some(3)), Lookup::NotFound);
    }

    #[test]
    fn blocking_reload_waits_for_the_awaited_part() {
        // Segments 0..=2 complete, segment 3 has parts 0 and 1.
        let window = window_with(3, 2);
        // RFC 8216bis §6.2.5.2: answer once the playlist contains the part (or later).
        assert_eq!(window.awaited(3, Some(1)), Awaited::Ready);
        assert_eq!(window.awaited(1, Some(3)), Awaited::Ready);
        assert_eq!(window.awaited(3, Some(2)), Awaited::Wait);
        // Without _HLS_part: wait for the whole segment.
        assert_eq!(window.awaited(2, None), Awaited::Ready);
        assert_eq!(window.awaited(3, None), Awaited::Wait);
        assert_eq!(window.awaited(4, Some(0)), Awaited::Wait);
    }

    #[test]
    fn blocking_reload_refuses_requests_too_far_ahead() {
        let window = window_with(3, 2);
        // RFC 8216bis §6.2.5.2: an _HLS_msn more than two past the last complete segment
        // (2) is refused.
        assert_eq!(window.awaited(4, None), Awaited::Wait);
        assert_eq!(window.awaited(5, None), Awaited::TooFar);
        // RFC 8216bis §6.2.5.2: the Advance Part Limit is 3 / 0.25 s = 12 parts.
        assert_eq!(window.awaited(3, Some(13)), Awaited::Wait);
        assert_eq!(window.awaited(3, Some(14)), Awaited::TooFar);
        assert_eq!(window.awaited(4, Some(11)), Awaited::Wait);
        assert_eq!(window.awaited(4, Some(12)), Awaited::TooFar);
        assert_eq!(advance_part_limit(200), 15);
        assert_eq!(advance_part_limit(1000), 3);
    }

    #[test]
    fn a_part_index_past_a_complete_segment_means_the_next_segment() {
        // RFC 8216bis §6.2.5.2: a part index past the final part of its segment is treated
        // as part 0 of the following segment.
        let window = window_with(3, 0);
        assert_eq!(window.awaited(2, Some(4)), Awaited::Wait);
        let window = window_with(3, 1);
        assert_eq!(window.awaited(2, Some(4)), Awaited::Ready);
    }

    #[test]
    fn an_ended_stream_answers_at_once() {
        let mut window = window_with(2, 1);
        window.end();
        // RFC 8216bis §6.2.5.2: _HLS_msn/_HLS_part are ignored once EXT-X-ENDLIST is there.
        assert_eq!(window.awaited(9, Some(0)), Awaited::Ready);
        assert_eq!(
            window.part(PartPosition { msn: 2, part: 1 }),
            Lookup::NotFound
        );
        let playlist = window.media_playlist(Vec::new());
        assert!(playlist.ended);
        assert_eq!(playlist.preload_hint, None);
        assert_eq!(
            playlist.segments.last().and_then(|s| s.uri.as_deref()),
            Some("2.m4s")
        );
        assert_eq!(
            window.push_part(&meta(2, 1, 4), part_bytes(2, 1), 0),
            Err(PushError::Ended)
        );
    }

    #[test]
    fn only_the_next_parts_are_waited_for() {
        let window = window_with(3, 2);
        // The preload hint (3.2) and a little past it (another replica may be ahead).
        assert_eq!(window.part(PartPosition { msn: 3, part: 2 }), Lookup::Wait);
        assert_eq!(window.part(PartPosition { msn: 4, part: 0 }), Lookup::Wait);
        // RFC 8216bis §6.2.6: beyond that, 404.
        assert_eq!(
            window.part(PartPosition { msn: 3, part: 40 }),
            Lookup::NotFound
        );
        assert_eq!(
            window.part(PartPosition { msn: 9, part: 0 }),
            Lookup::NotFound
        );
        // A complete segment has no more parts.
        assert_eq!(
            window.part(PartPosition { msn: 2, part: 4 }),
            Lookup::NotFound
        );
    }

    fn listed_parts(playlist: &MediaPlaylist) -> Vec<String> {
        playlist
            .segments
            .iter()
            .flat_map(|s| s.parts.iter().map(|p| p.uri.clone()))
            .collect()
    }

    #[test]
    fn a_segments_parts_leave_the_playlist_together_three_target_durations_after_it_ended() {
        // Target duration 1 s; 9 complete segments and one part of the tenth: the edge is
        // at 9.25 s.
        let window = window_with(9, 1);
        let playlist = window.media_playlist(Vec::new());
        // RFC 8216bis §6.2.2: a parent segment's EXT-X-PART tags go once it ended more
        // than 3 target durations before the end, all together (a part is addressed by its
        // index in its parent): segments ending at or after 6.25 s keep theirs.
        assert_eq!(
            listed_parts(&playlist).first().map(String::as_str),
            Some("6.0.m4s")
        );
        assert_eq!(listed_parts(&playlist).len(), 3 * 4 + 1);
        for segment in &playlist.segments {
            assert!(
                segment.parts.is_empty()
                    || segment.parts[0].uri == format!("{}.0.m4s", segment.msn)
            );
        }
        assert_eq!(
            playlist.segments.len(),
            10,
            "segments stay for the DVR window"
        );
        // RFC 8216bis §6.2.2: a removed part stays fetchable 3 target durations more.
        // Segment 3 (ended at 4 s) left the playlist at edge 7 s, so until 10 s; segment 2
        // (ended at 3 s) until 9 s.
        assert_eq!(
            window.part(PartPosition { msn: 3, part: 0 }),
            Lookup::Found(part_bytes(3, 0))
        );
        assert_eq!(window.part(PartPosition { msn: 2, part: 3 }), Lookup::Gone);
        assert_eq!(
            window.segment_bytes(0),
            Lookup::Found(Bytes::from_static(b"[0.0][0.1][0.2][0.3]"))
        );
    }

    #[test]
    fn the_segment_in_progress_keeps_its_parts_however_long_it_runs() {
        // A publisher's 8 s GOP against a 1 s target duration: segment 2 is still in
        // progress after 32 parts.
        let mut window = window_with(2, 0);
        for part in 0..32 {
            let mut meta = meta(2, part, 100);
            meta.ends_segment = false;
            window.push_part(&meta, part_bytes(2, part), 0).unwrap();
        }
        // RFC 8216bis §6.2.2: the parts of the live edge stay listed, even those that
        // started 8 s (more than 3 target durations) ago, and fetchable.
        let playlist = window.media_playlist(Vec::new());
        let in_progress = playlist.segments.last().unwrap();
        assert_eq!(in_progress.uri, None);
        assert_eq!(in_progress.parts.len(), 32);
        assert_eq!(
            window.part(PartPosition { msn: 2, part: 0 }),
            Lookup::Found(part_bytes(2, 0))
        );
        // Once it completes, its old parts leave the playlist, and stay fetchable for 3
        // target durations from then (RFC 8216bis §6.2.2).
        let mut last = meta(2, 32, 100);
        last.ends_segment = true;
        window.push_part(&last, part_bytes(2, 32), 0).unwrap();
        let playlist = window.media_playlist(Vec::new());
        assert_eq!(
            listed_parts(&playlist).first().map(String::as_str),
            Some("2.0.m4s"),
            "a segment that just ended keeps all its parts"
        );
        // Ended at 10.25 s: listed until the edge passes 13.25 s, fetchable until 16.25 s.
        push_segments(&mut window, 3..6);
        let playlist = window.media_playlist(Vec::new());
        assert_eq!(
            listed_parts(&playlist).first().map(String::as_str),
            Some("2.0.m4s")
        );
        push_segments(&mut window, 6..9);
        let playlist = window.media_playlist(Vec::new());
        // Edge 16.25 s: segment 5 ended exactly 3 target durations before it.
        assert_eq!(
            listed_parts(&playlist).first().map(String::as_str),
            Some("5.0.m4s")
        );
        assert!(matches!(
            window.part(PartPosition { msn: 2, part: 0 }),
            Lookup::Found(_)
        ));
        push_segments(&mut window, 9..10);
        assert_eq!(window.part(PartPosition { msn: 2, part: 0 }), Lookup::Gone);
    }

    #[test]
    fn the_window_keeps_the_dvr_duration_but_never_less_than_three_target_durations() {
        let limits = WindowLimits {
            dvr_window_secs: 5.0,
            ..LIMITS
        };
        let mut window = empty_window(limits);
        push_segments(&mut window, 0..20);
        let playlist = window.media_playlist(Vec::new());
        // Segment 14 ends 5 s behind the edge (20 s): it left the playlist; 15..=19 remain.
        assert_eq!(playlist.media_sequence, 15);
        assert_eq!(playlist.segments.len(), 5);

        let limits = WindowLimits {
            dvr_window_secs: 1.0,
            max_segments: 3,
            ..LIMITS
        };
        let mut window = empty_window(limits);
        push_segments(&mut window, 0..20);
        // RFC 8216bis §6.2.2: the playlist stays at least 3 target durations (3 s) long.
        let playlist = window.media_playlist(Vec::new());
        assert_eq!(
            playlist.segments.iter().map(|s| s.duration).sum::<f64>(),
            3.0
        );
    }

    #[test]
    fn a_segment_that_left_the_playlist_stays_fetchable_for_its_availability_duration() {
        let limits = WindowLimits {
            dvr_window_secs: 5.0,
            ..LIMITS
        };
        let mut window = empty_window(limits);
        push_segments(&mut window, 0..20);
        // RFC 8216bis §6.2.2: a segment removed from a live playlist stays available until
        // it first appeared (when it completed) plus its duration plus the longest playlist
        // it appeared in (5.75 s, just before segment 19 completed). Edge 20 s:
        // segment 14 (complete at 15 s) until 21.75 s, 12 (at 13 s) until 19.75 s.
        assert!(matches!(window.segment_bytes(14), Lookup::Found(_)));
        assert!(matches!(window.segment_bytes(13), Lookup::Found(_)));
        assert_eq!(window.segment_bytes(12), Lookup::Gone);
        // Its parts follow their own rule: fetchable until 3 target durations after they
        // left the playlist, 6 after the segment ended (13: ended at 14 s, so until 20 s).
        assert!(matches!(
            window.part(PartPosition { msn: 13, part: 0 }),
            Lookup::Found(_)
        ));
        assert_eq!(window.part(PartPosition { msn: 12, part: 0 }), Lookup::Gone);
        // The init version an unlisted segment uses is kept while the segment is.
        assert!(matches!(window.init(Some(0)), Lookup::Found(_)));
        // The playlist does not list them.
        let playlist = window.media_playlist(Vec::new());
        assert!(playlist.segments.iter().all(|s| s.msn >= 15));

        // The unlisted tail is bounded by count too. With one kept, segment 15 (available
        // until 20.75 s) goes early.
        let limits = WindowLimits {
            dvr_window_secs: 1.0,
            max_segments: 1,
            ..LIMITS
        };
        let mut window = empty_window(limits);
        push_segments(&mut window, 0..20);
        assert_eq!(window.media_playlist(Vec::new()).media_sequence, 17);
        assert!(matches!(window.segment_bytes(16), Lookup::Found(_)));
        assert_eq!(window.segment_bytes(15), Lookup::Gone);
    }

    #[test]
    fn removing_a_discontinuity_advances_the_discontinuity_sequence() {
        let limits = WindowLimits {
            dvr_window_secs: 3.0,
            ..LIMITS
        };
        let mut window = empty_window(limits);
        for msn in 0..10 {
            for part in 0..4 {
                let mut meta = meta(msn, part, 4);
                meta.discontinuity = msn == 2 && part == 0;
                window.push_part(&meta, part_bytes(msn, part), 0).unwrap();
            }
        }
        // RFC 8216bis §6.2.2: EXT-X-DISCONTINUITY-SEQUENCE counts the removed ones.
        assert_eq!(window.media_playlist(Vec::new()).discontinuity_sequence, 1);
    }

    #[test]
    fn part_durations_are_checked() {
        let mut window = window_with(0, 0);
        // The segment target is 1 s: a part may last at most 2 s.
        for duration in [0.0, -0.25, f64::NAN, f64::INFINITY, 2.01] {
            let mut meta = meta(0, 0, 4);
            meta.duration = duration;
            assert!(
                matches!(
                    window.push_part(&meta, part_bytes(0, 0), 0),
                    Err(PushError::InvalidDuration { .. })
                ),
                "{duration}"
            );
        }
        let mut meta = meta(0, 0, 4);
        meta.duration = 2.0;
        assert_eq!(
            window.push_part(&meta, part_bytes(0, 0), 0),
            Ok(Pushed::Stored)
        );
    }

    #[test]
    fn init_versions_are_capped_and_unused_ones_pruned() {
        // LIMITS keeps 4 init versions.
        let mut window = window_with(0, 0);
        for version in 1..=3 {
            window
                .push_init(version, Bytes::from(format!("init{version}")))
                .unwrap();
        }
        // Pushed ahead of any part: all kept. A fifth makes the oldest unused one go.
        window.push_init(4, Bytes::from_static(b"init4")).unwrap();
        assert_eq!(window.init(Some(0)), Lookup::Gone);
        assert!(matches!(window.init(Some(1)), Lookup::Found(_)));
        // Parts use version 2: the unused older version 1 will never be used again.
        let mut first = meta(0, 0, 4);
        first.init_version = 2;
        window.push_part(&first, part_bytes(0, 0), 0).unwrap();
        window.push_init(5, Bytes::from_static(b"init5")).unwrap();
        assert_eq!(window.init(Some(1)), Lookup::Gone);
        assert!(matches!(window.init(Some(2)), Lookup::Found(_)));
        assert!(matches!(window.init(Some(5)), Lookup::Found(_)));
    }

    #[test]
    fn init_versions_in_use_within_three_target_durations_refuse_a_new_one() {
        let limits = WindowLimits {
            max_init_versions: 2,
            ..LIMITS
        };
        let mut window = empty_window(limits);
        window.push_init(1, Bytes::from_static(b"init1")).unwrap();
        // Segment 0 uses version 0, segment 1 version 1: both in the 3 s playlist floor.
        window
            .push_part(&meta(0, 0, 1), part_bytes(0, 0), 0)
            .unwrap();
        let mut second = meta(1, 0, 1);
        second.init_version = 1;
        window.push_part(&second, part_bytes(1, 0), 0).unwrap();
        assert_eq!(
            window.push_init(2, Bytes::from_static(b"init2")),
            Err(PushError::TooManyInitVersions { version: 2, max: 2 })
        );
        assert_eq!(window.init(Some(2)), Lookup::NotFound);
        // With 4 s more of version 1, segment 0 can go: the new version makes room.
        for msn in 2..6 {
            let mut meta = meta(msn, 0, 1);
            meta.init_version = 1;
            meta.duration = 1.0;
            window.push_part(&meta, part_bytes(msn, 0), 0).unwrap();
        }
        assert_eq!(
            window.push_init(2, Bytes::from_static(b"init2")),
            Ok(Pushed::Stored)
        );
        assert_eq!(window.init(Some(0)), Lookup::Gone);
        assert_eq!(window.segment_bytes(0), Lookup::Gone);
        assert_eq!(window.media_playlist(Vec::new()).media_sequence, 1);
    }

    #[test]
    fn the_playlist_model_follows_the_window() {
        let window = window_with(2, 2);
        let playlist = window.media_playlist(Vec::new());
        assert_eq!(playlist.target_duration, 1);
        assert_eq!(playlist.part_target, 0.25);
        // RFC 8216bis §4.4.3.8: PART-HOLD-BACK ≥ 3 × PART-TARGET, CAN-SKIP-UNTIL ≥ 6 × TD.
        assert_eq!(
            playlist.server_control,
            ServerControl {
                can_block_reload: true,
                part_hold_back: 0.75,
                can_skip_until: Some(6.0)
            }
        );
        assert_eq!(playlist.media_sequence, 0);
        let in_progress = &playlist.segments[2];
        assert_eq!(in_progress.uri, None);
        assert_eq!(in_progress.duration, 0.5);
        assert_eq!(in_progress.map_uri, "init0.mp4");
        assert_eq!(in_progress.program_date_time_ms, Some(1_700_000_002_000));
        assert_eq!(
            in_progress.parts,
            vec![
                PartEntry {
                    duration: 0.25,
                    uri: "2.0.m4s".to_string(),
                    independent: true
                },
                PartEntry {
                    duration: 0.25,
                    uri: "2.1.m4s".to_string(),
                    independent: false
                },
            ]
        );
        // RFC 8216bis §4.4.5.3: the preload hint names the next part.
        assert_eq!(playlist.preload_hint.as_deref(), Some("2.2.m4s"));
        assert_eq!(
            window_with(2, 0)
                .media_playlist(Vec::new())
                .preload_hint
                .as_deref(),
            Some("2.0.m4s")
        );
    }

    #[test]
    fn the_target_duration_is_fixed_and_longer_segments_are_counted() {
        // A 2 s segment target with the default factor 1.5 declares TARGETDURATION 3.
        assert_eq!(target_duration_for(2000, 1.5), 3);
        assert_eq!(target_duration_for(1000, 1.0), 1);
        assert_eq!(target_duration_for(1200, 2.5), 3);
        assert_eq!(target_duration_for(2001, 1.0), 3);
        assert_eq!(target_duration_for(1, 1.0), 1);
        assert_eq!(target_duration_for(u32::MAX, 3.0), 12_884_902);

        let mut window = window_with(1, 0);
        // A 1.6 s segment (a long GOP): its EXTINF rounds to 2 > 1 (RFC 8216bis §4.4.3.1).
        for part in 0..6 {
            let mut meta = meta(1, part, 6);
            meta.duration = 0.26666;
            window.push_part(&meta, part_bytes(1, part), 0).unwrap();
        }
        // RFC 8216bis §6.2.1: the target duration MUST NOT change; the segment is counted.
        assert_eq!(window.target_duration(), 1);
        assert_eq!(window.media_playlist(Vec::new()).target_duration, 1);
        assert_eq!(window.segments_over_target(), 1);
        assert_eq!(window.first_over_target().map(|o| o.msn), Some(1));
        // 1.4 s rounds to 1: within the target.
        for part in 0..4 {
            let mut meta = meta(2, part, 4);
            meta.duration = 0.35;
            window.push_part(&meta, part_bytes(2, part), 0).unwrap();
        }
        assert_eq!(window.segments_over_target(), 1);
    }

    #[test]
    fn bandwidth_is_measured_over_complete_segments() {
        // Every part is 5 bytes ("[0.1]"): 20 bytes per 1 s segment = 160 bit/s.
        let window = window_with(0, 2);
        // Before a complete segment, estimated from the parts: 10 bytes in 0.5 s.
        assert_eq!(
            window.bandwidth(),
            Some(Bandwidth {
                peak: 160,
                average: 160,
                current: 160
            })
        );
        let window = window_with(2, 0);
        assert_eq!(
            window.bandwidth(),
            Some(Bandwidth {
                peak: 160,
                average: 160,
                current: 160
            })
        );
        assert_eq!(window_with(0, 0).bandwidth(), None);
    }

    #[test]
    fn a_takeover_closes_the_abandoned_segment_and_continues_after_it() {
        // Segments 0 and 1 complete, then two parts of segment 2: the transcoder dies.
        let mut window = window_with(2, 2);
        // The new one asks where to continue (GET .../last), pushes init version
        // previous + 1, then part 0 of the segment after the abandoned one.
        let last = window.last().cloned().unwrap();
        assert_eq!((last.msn, last.part, last.ends_segment), (2, 1, false));
        assert_eq!(last.init_version, 0);
        // Blocked before the takeover: a reload for the abandoned segment's next part.
        assert_eq!(window.awaited(2, Some(2)), Awaited::Wait);
        assert_eq!(window.part(PartPosition { msn: 2, part: 2 }), Lookup::Wait);
        window
            .push_init(last.init_version + 1, Bytes::from_static(b"init1"))
            .unwrap();
        let mut first = meta(last.msn + 1, 0, 4);
        first.discontinuity = true;
        first.init_version = 1;
        assert_eq!(
            window.push_part(&first, part_bytes(3, 0), 0),
            Ok(Pushed::Stored)
        );
        // The abandoned segment closed as it was: shorter, listed with its URI and its
        // two parts, fetchable whole and part by part.
        let playlist = window.media_playlist(Vec::new());
        let abandoned = &playlist.segments[2];
        assert_eq!(abandoned.uri.as_deref(), Some("2.m4s"));
        assert_eq!(abandoned.duration, 0.5);
        assert_eq!(abandoned.parts.len(), 2);
        assert_eq!(
            window.segment_bytes(2),
            Lookup::Found(Bytes::from_static(b"[2.0][2.1]"))
        );
        // RFC 8216bis §4.4.4.3: the new segment follows a discontinuity, with its new
        // init section (§4.4.4.5).
        let next = &playlist.segments[3];
        assert!(next.discontinuity);
        assert_eq!(next.map_uri, "init1.mp4");
        assert!(!playlist.segments[..3].iter().any(|s| s.discontinuity));
        // The blocked reload is answered (§6.2.5.2: a part index past a complete segment's
        // last part means the next segment's part 0), the part request is not found.
        assert_eq!(window.awaited(2, Some(2)), Awaited::Ready);
        assert_eq!(
            window.part(PartPosition { msn: 2, part: 2 }),
            Lookup::NotFound
        );
        // No MSN goes back.
        assert!(matches!(
            window.push_part(&meta(2, 2, 4), part_bytes(2, 2), 0),
            Err(PushError::OutOfOrder { .. })
        ));
        assert_eq!(window.last().map(|l| l.init_version), Some(1));
    }

    #[test]
    fn a_segment_cut_short_does_not_set_the_peak() {
        // Whole segments of 20 bytes per second (160 bit/s); then a cut-short segment that
        // is mostly its IDR: 80 bytes in 0.25 s.
        let mut window = window_with(2, 0);
        let mut idr = meta(2, 0, 4);
        idr.ends_segment = false;
        window
            .push_part(&idr, Bytes::from(vec![0u8; 80]), 0)
            .unwrap();
        let mut next = meta(3, 0, 4);
        next.discontinuity = true;
        window.push_part(&next, part_bytes(3, 0), 0).unwrap();
        let bandwidth = window.bandwidth().unwrap();
        // RFC 8216bis §4.4.6.2: the peak segment bit rate, of segments as packaged.
        assert_eq!(bandwidth.peak, 160);
        // The average counts every byte served.
        assert_eq!(bandwidth.average, ((40 + 80) * 8 * 4u64).div_ceil(9));
    }

    #[test]
    fn before_a_complete_segment_bandwidth_comes_from_the_hint() {
        let mut descriptor = descriptor("720p", RenditionKind::Video);
        descriptor.bandwidth_hint_bps = Some(3_000_000);
        let mut window = RenditionWindow::new(descriptor, LIMITS, TARGET_DURATION);
        window.push_init(0, Bytes::from_static(b"init0")).unwrap();
        assert_eq!(window.bandwidth(), None);
        // One part that is mostly an IDR frame would claim a huge rate.
        let mut idr = meta(0, 0, 4);
        idr.duration = 0.1;
        window
            .push_part(&idr, Bytes::from(vec![0u8; 200_000]), 0)
            .unwrap();
        assert_eq!(
            window.bandwidth(),
            Some(Bandwidth {
                peak: 3_300_000,
                average: 3_000_000,
                current: 3_000_000
            })
        );
        // Measured once a segment is complete: 4 parts of 5 bytes in 1 s and the IDR part.
        for part in 1..4 {
            window
                .push_part(&meta(0, part, 4), part_bytes(0, part), 0)
                .unwrap();
        }
        let measured = window.bandwidth().unwrap();
        assert_eq!(measured.peak, ((200_000 + 15) * 8 * 20u64).div_ceil(17));
    }

    #[test]
    fn sync_sample_bytes_are_checked_and_address_the_iframe() {
        let mut window = empty_window(LIMITS);
        for bad in [0, 6] {
            let mut first = meta(0, 0, 4);
            first.sync_sample_bytes = Some(bad);
            assert!(matches!(
                window.push_part(&first, part_bytes(0, 0), 0),
                Err(PushError::InvalidSyncSampleBytes { .. })
            ));
        }
        for msn in 0..3 {
            for part in 0..4 {
                let mut meta = meta(msn, part, 4);
                // Segment 1's pusher did not measure its I-frame: the first part whole.
                meta.sync_sample_bytes = (part == 0 && msn != 1).then_some(3);
                window.push_part(&meta, part_bytes(msn, part), 0).unwrap();
            }
        }
        window
            .push_part(&meta(3, 0, 4), part_bytes(3, 0), 0)
            .unwrap();
        let playlist = window.iframe_playlist();
        // RFC 8216bis §4.4.3.6: one I-frame per complete segment, EXTINF its interval (the
        // segment), the byte range from the segment's start; the segment in progress has
        // none yet.
        assert_eq!(playlist.media_sequence, 0);
        assert_eq!(playlist.target_duration, TARGET_DURATION);
        let entries: Vec<_> = playlist
            .entries
            .iter()
            .map(|e| (e.uri.clone(), e.byte_range, e.duration))
            .collect();
        assert_eq!(
            entries,
            vec![
                ("0.m4s".to_string(), Some((3, 0)), 1.0),
                ("1.m4s".to_string(), Some((5, 0)), 1.0),
                ("2.m4s".to_string(), Some((3, 0)), 1.0),
            ]
        );
        assert_eq!(playlist.entries[0].map_uri, "init0.mp4");
        assert_eq!(
            playlist.entries[2].program_date_time_ms,
            Some(1_700_000_002_000)
        );
        // BANDWIDTH of the I-frames (§4.4.6.3): the largest, 5 bytes per 1 s segment.
        assert_eq!(window.iframe_bandwidth().map(|b| b.peak), Some(40));
        assert!(window.has_complete_segment());
    }

    #[test]
    fn the_peak_is_a_segments_rate_not_a_parts() {
        // Segment 0: an 80-byte IDR part and three 5-byte parts (95 bytes in 1 s);
        // segment 1: four 5-byte parts. The IDR part alone runs at 2560 bit/s.
        let mut window = empty_window(LIMITS);
        window
            .push_part(&meta(0, 0, 4), Bytes::from(vec![0u8; 80]), 0)
            .unwrap();
        for part in 1..4 {
            window
                .push_part(&meta(0, part, 4), part_bytes(0, part), 0)
                .unwrap();
        }
        push_segments(&mut window, 1..2);
        // RFC 8216bis §4.4.6.2: BANDWIDTH is the peak segment bit rate.
        assert_eq!(
            window.bandwidth(),
            Some(Bandwidth {
                peak: 760,
                average: 460,
                current: 160
            })
        );
    }

    /// (msn, EXTINF, gap, EXT-X-PROGRAM-DATE-TIME) of every listed segment.
    fn timeline(window: &RenditionWindow) -> Vec<(u64, f64, bool, Option<i64>)> {
        window
            .media_playlist(Vec::new())
            .segments
            .iter()
            .map(|s| (s.msn, s.duration, s.gap, s.program_date_time_ms))
            .collect()
    }

    /// Segments 0 and 1 (1 s each, from `T0`), then part 4.0 at `pdt_ms`.
    fn jump_to_4(pdt_ms: Option<i64>) -> RenditionWindow {
        let mut window = window_with(2, 0);
        let mut jump = meta(4, 0, 4);
        jump.discontinuity = true;
        jump.program_date_time_ms = pdt_ms;
        assert_eq!(window.skipped_segments(&jump), Some(2..4));
        window.push_part(&jump, part_bytes(4, 0), 0).unwrap();
        window
    }

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn skipped_segment_numbers_become_gaps() {
        // RFC 8216bis §4.4.4.7: the skipped numbers 2 and 3 share the 1.5 s from the end
        // of segment 1 (T0 + 2 s) to segment 4's date, and their dates follow on.
        let window = jump_to_4(Some(T0 + 3_500));
        assert_eq!(
            timeline(&window),
            vec![
                (0, 1.0, false, Some(T0)),
                (1, 1.0, false, Some(T0 + 1_000)),
                (2, 0.75, true, Some(T0 + 2_000)),
                (3, 0.75, true, Some(T0 + 2_750)),
                (4, 0.25, false, Some(T0 + 3_500)),
            ]
        );
        assert!(window.media_playlist(Vec::new()).segments[4].discontinuity);
        assert_eq!(window.segment_bytes(2), Lookup::NotFound);
        assert_eq!(
            window.part(PartPosition { msn: 3, part: 0 }),
            Lookup::NotFound
        );
        // Gaps are not measured: the peak stays that of the segments with media.
        assert_eq!(window.bandwidth().map(|b| b.peak), Some(160));
        let iframes = window.iframe_playlist();
        assert_eq!(iframes.entries[2].byte_range, None);
        assert_eq!(iframes.entries.len(), 4);
    }

    #[test]
    fn gap_timing_comes_from_the_renditions_own_segments() {
        // The previous segment already reached the next one's date (a rung without a
        // keyframe at another rung's cut): the gaps take no time.
        let covered: Vec<f64> = timeline(&jump_to_4(Some(T0 + 1_500)))
            .iter()
            .map(|s| s.1)
            .collect();
        assert_eq!(covered, vec![1.0, 1.0, 0.0, 0.0, 0.25]);
        // RFC 8216bis §4.4.3.1: each gap at most the target duration; the next segment's
        // date then jumps ahead.
        let long = timeline(&jump_to_4(Some(T0 + 10_000)));
        assert_eq!(long[2], (2, 1.0, true, Some(T0 + 2_000)));
        assert_eq!(long[3], (3, 1.0, true, Some(T0 + 3_000)));
        assert_eq!(long[4].3, Some(T0 + 10_000));
        // Without a date to measure by, each lasts the segment target.
        let undated = timeline(&jump_to_4(None));
        assert_eq!(undated[2], (2, 1.0, true, Some(T0 + 2_000)));
        assert_eq!(undated[3], (3, 1.0, true, Some(T0 + 3_000)));
        // Further than the window holds: out of order.
        let mut window = window_with(2, 0);
        let far = meta(2 + LIMITS.max_segments as u64 + 1, 0, 4);
        assert!(matches!(
            window.push_part(&far, part_bytes(far.msn, 0), 0),
            Err(PushError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn a_segment_without_a_sync_sample_is_an_iframe_gap_not_a_missing_entry() {
        let mut window = window_with(1, 0);
        for part in 0..4 {
            let mut meta = meta(1, part, 4);
            // A pusher without sync_sample_bytes, and no sync sample at the segment start.
            meta.independent = false;
            window.push_part(&meta, part_bytes(1, part), 0).unwrap();
        }
        push_segments(&mut window, 2..3);
        let iframes = window.iframe_playlist();
        let ranges: Vec<(String, Option<(u64, u64)>)> = iframes
            .entries
            .iter()
            .map(|e| (e.uri.clone(), e.byte_range))
            .collect();
        // RFC 8216bis §4.4.4.7: still numbered as the media playlist, segment 1 a gap.
        assert_eq!(
            ranges,
            vec![
                ("0.m4s".to_string(), Some((5, 0))),
                ("1.m4s".to_string(), None),
                ("2.m4s".to_string(), Some((5, 0))),
            ]
        );
    }
}
