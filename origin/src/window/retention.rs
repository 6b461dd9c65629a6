//! How long the window keeps what: parts leave the playlist three target durations
//! behind the edge and stay fetchable as long again, segments stay for the DVR window,
//! init versions while a listed segment needs them (RFC 8216bis §6.2.2).

use std::collections::BTreeSet;

use super::{MIN_PLAYLIST_TARGET_DURATIONS, RenditionWindow};

impl RenditionWindow {
    pub(super) fn min_playlist(&self) -> f64 {
        MIN_PLAYLIST_TARGET_DURATIONS * f64::from(self.target_duration)
    }

    /// Media seconds the playlist spans, from its first segment to the edge.
    pub(super) fn playlist_duration(&self) -> f64 {
        self.segments
            .get(self.unlisted)
            .map_or(0.0, |first| self.edge - first.start)
    }

    /// The playlist's oldest segment may leave it: it is complete, and the playlist stays
    /// at least three target durations long without it (RFC 8216bis §6.2.2).
    pub(super) fn can_unlist_front(&self) -> bool {
        self.segments.get(self.unlisted).is_some_and(|front| {
            !front.in_progress() && self.edge - front.end() >= self.min_playlist()
        })
    }

    /// Removes the playlist's oldest segment from the playlist. RFC 8216bis §6.2.2: it stays
    /// fetchable from when it first appeared (its URI was added when it completed) for its
    /// Availability Duration: its duration plus the longest playlist it appeared in.
    pub(super) fn unlist_front(&mut self) {
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
    pub(super) fn evict(&mut self) {
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

    pub(super) fn drop_front(&mut self) {
        if self.unlisted > 0 && self.segments.pop_front().is_some() {
            self.unlisted -= 1;
        }
    }

    /// Keeps the init versions a stored segment uses, the latest, and versions newer than
    /// any in use (pushed ahead of their first part). Versions only move forward, so an
    /// unused one older than a used one will never be used. Over the cap, unused versions
    /// go first, oldest first.
    pub(super) fn prune_inits(&mut self) {
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
    pub(super) fn make_room_for_inits(&mut self) -> bool {
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
}
