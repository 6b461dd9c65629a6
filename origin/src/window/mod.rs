//! The live window of one rendition, without I/O: pushed parts in, playlist models, bytes
//! and blocking decisions out. Time is media time (the sum of part durations), never the
//! wall clock, so every replica fed the same parts makes the same decisions.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use floodlight_media::push::{LastPart, PartMeta, RenditionDescriptor};

mod retention;
mod serve;

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

/// A segment that just completed, as the archive takes it: its bytes are those served at
/// `{msn}.m4s`. Gap segments have no media and are not handed out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompletedSegment {
    pub(crate) msn: u64,
    /// Seconds: the sum of its parts' durations.
    pub(crate) duration: f64,
    pub(crate) program_date_time_ms: Option<i64>,
    pub(crate) discontinuity: bool,
    pub(crate) init_version: u32,
    /// The byte range of its first sync sample (what an I-frame playlist addresses).
    pub(crate) iframe_bytes: Option<u64>,
    pub(crate) bytes: Bytes,
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
    /// Segments completed since [`take_completed`](Self::take_completed) last ran: the
    /// archive's outbox, drained after every change.
    completed: Vec<CompletedSegment>,
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
            completed: Vec::new(),
        }
    }

    /// The segments completed since the last call, oldest first.
    pub(crate) fn take_completed(&mut self) -> Vec<CompletedSegment> {
        std::mem::take(&mut self.completed)
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
        if let Some(bytes) = segment.bytes.clone().filter(|b| !b.is_empty()) {
            self.completed.push(CompletedSegment {
                msn: segment.msn,
                duration: segment.duration,
                program_date_time_ms: segment.program_date_time_ms,
                discontinuity: segment.discontinuity,
                init_version: segment.init_version,
                iframe_bytes: segment.iframe_bytes(),
                bytes,
            });
        }
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
pub(crate) mod tests;
