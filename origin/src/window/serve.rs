//! What the window serves: parts, segments and inits by position, the blocking-reload
//! decision (RFC 8216bis §6.2.5.2), the media and I-frame playlist models, rendition
//! reports and measured bandwidths.

use floodlight_media::playlist::{
    IFrameEntry, IFramePlaylist, MediaPlaylist, PartEntry, RenditionReport, SegmentEntry,
    ServerControl,
};
use floodlight_media::push::RenditionKind;

use super::{
    Awaited, BANDWIDTH_HINT_HEADROOM_PERCENT, Bandwidth, Lookup,
    PART_FETCHABLE_AFTER_DELISTING_TARGET_DURATIONS, PART_HOLD_BACK_PART_TARGETS,
    PART_LISTED_TARGET_DURATIONS, PartPosition, RenditionWindow, SKIP_UNTIL_TARGET_DURATIONS,
    Segment, StoredPart, advance_part_limit,
};
use crate::resource;

impl RenditionWindow {
    pub(super) fn stored_part(&self, position: PartPosition) -> Option<&StoredPart> {
        self.segment(position.msn)?
            .parts
            .get(usize::try_from(position.part).ok()?)
    }

    /// A stored segment, listed or not.
    pub(super) fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    /// The part the packager will push next: the preload hint (RFC 8216bis §4.4.5.3).
    pub(super) fn next_expected(&self) -> Option<PartPosition> {
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
    pub(super) fn parts_listed(&self, segment: &Segment) -> bool {
        segment.in_progress()
            || self.edge - segment.end()
                <= PART_LISTED_TARGET_DURATIONS * f64::from(self.target_duration)
    }

    /// RFC 8216bis §6.2.2: a part stays fetchable three target durations after its tag
    /// left the playlist.
    pub(super) fn part_fetchable(&self, segment: &Segment) -> bool {
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
    pub(super) fn media_sequence(&self) -> u64 {
        self.segments.get(self.unlisted).map_or_else(
            || self.segments.back().map_or(0, |s| s.msn.saturating_add(1)),
            |s| s.msn,
        )
    }
}
