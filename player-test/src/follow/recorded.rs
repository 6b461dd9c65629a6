//! Following a recorded playlist as a plain HLS player does (RFC 8216bis §6.3): every
//! segment in order from the first, the EXT-X-MAP init sections as they change, gaps
//! passed over; an EVENT playlist reloaded about every target duration until
//! EXT-X-ENDLIST. I-frame playlists are followed the same way, each I-frame fetched with
//! a Range request.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};

use super::rendition::{DeadlineReached, Follower, Role};
use super::{Fetched, RecordedPace, describe, get_range};
use crate::check::{Arrival, SegmentRef, segments_from};
use crate::playlist::{ByteRange, MediaPlaylist, PlaylistType};

/// Target durations of media a player paced at real time keeps fetched ahead of its
/// playhead: the three target durations RFC 8216bis §6.3.3 keeps a live player from the
/// end of a playlist.
const REALTIME_BUFFER_TARGET_DURATIONS: u32 = 3;

impl Follower<'_> {
    /// Follows from the first playlist (already checked) until EXT-X-ENDLIST or the
    /// deadline; whether the stream ended.
    pub(super) async fn follow_recorded(
        &mut self,
        mut playlist: MediaPlaylist,
        mut loaded_at: Instant,
    ) -> Result<bool, DeadlineReached> {
        let url = self.playlist_url.clone();
        let master_independent = self.context.master_independent;
        loop {
            let target = Duration::from_secs(playlist.target_duration.max(1));
            let (segments, lost) = segments_from(&playlist, self.checker.next_segment());
            if let Some(lost) = lost {
                self.checker.error(lost);
            }
            let changed = !segments.is_empty() || playlist.ended;
            for segment in &segments {
                if segment.gap {
                    // RFC 8216bis §4.4.4.7: a client does not load a gap segment.
                    self.checker.pass_gap(segment);
                } else if self.role == Role::IFrames {
                    self.fetch_iframe(segment).await?;
                } else {
                    self.pace(target).await?;
                    self.fetch_segment(segment).await?;
                }
            }
            if playlist.ended {
                return Ok(true);
            }
            if playlist.playlist_type == Some(PlaylistType::Vod) {
                // It cannot change (§4.4.3.5); the missing EXT-X-ENDLIST is reported.
                return Ok(false);
            }
            // RFC 8216bis §6.3.4: reload one target duration after the last load began,
            // or half of one when that load brought nothing new.
            let wait = if changed { target } else { target / 2 };
            self.pause_until(loaded_at + wait).await?;
            loaded_at = Instant::now();
            if let Some(reloaded) = self.fetch_playlist(&url).await? {
                self.checker
                    .observe_recorded_playlist(&reloaded, master_independent);
                playlist = reloaded;
            }
        }
    }

    /// With `RecordedPace::RealTime`, waits until a player playing since the first
    /// segment's arrival would fetch the next one.
    async fn pace(&self, target: Duration) -> Result<(), DeadlineReached> {
        if self.context.config.pace != RecordedPace::RealTime {
            return Ok(());
        }
        let buffer = target * REALTIME_BUFFER_TARGET_DURATIONS;
        match self.checker.next_segment_due(buffer) {
            Some(due) => self.pause_until(self.start + due).await,
            None => Ok(()),
        }
    }

    async fn fetch_segment(&mut self, segment: &SegmentRef) -> Result<(), DeadlineReached> {
        let Some(url) = self.resolve(&segment.uri) else {
            self.checker.skip_segment(segment.msn);
            return Ok(());
        };
        self.ensure_init(segment.map_uri.as_deref(), segment.msn)
            .await?;
        let context = format!("segment {} {url}", segment.msn);
        match self.fetch_media(&url, segment.byte_range, &context).await? {
            Some((bytes, arrival)) => {
                self.checker
                    .check_segment(segment, url.as_str(), &bytes, arrival);
            }
            None => self.checker.skip_segment(segment.msn),
        }
        Ok(())
    }

    async fn fetch_iframe(&mut self, entry: &SegmentRef) -> Result<(), DeadlineReached> {
        let Some(url) = self.resolve(&entry.uri) else {
            self.checker.skip_segment(entry.msn);
            return Ok(());
        };
        self.ensure_init(entry.map_uri.as_deref(), entry.msn)
            .await?;
        let context = format!("I-frame {} {url}", entry.msn);
        match self.fetch_media(&url, entry.byte_range, &context).await? {
            Some((bytes, arrival)) => {
                self.checker
                    .check_iframe(entry, url.as_str(), &bytes, arrival);
            }
            None => self.checker.skip_segment(entry.msn),
        }
        Ok(())
    }

    /// GETs a segment, or its EXT-X-BYTERANGE with a Range request: the body and when it
    /// arrived, or `None` (reported) when there is nothing to check.
    async fn fetch_media(
        &mut self,
        url: &Url,
        range: Option<ByteRange>,
        context: &str,
    ) -> Result<Option<(bytes::Bytes, Arrival)>, DeadlineReached> {
        let answer =
            tokio::time::timeout_at(self.deadline, get_range(self.context.client, url, range))
                .await
                .map_err(|_| DeadlineReached)?;
        let fetched = match answer {
            Ok(fetched) => fetched,
            Err(e) => {
                self.checker.error(format!("{context}: {}", describe(&e)));
                return Ok(None);
            }
        };
        let arrival = Arrival {
            since_start: fetched.done - self.start,
            unix_ms: fetched.unix_ms,
        };
        let body = match (range, fetched.status) {
            (None, StatusCode::OK) => fetched.body,
            (Some(range), StatusCode::PARTIAL_CONTENT) => {
                if let Some(problem) = range_problem(range, &fetched) {
                    self.checker.error(format!("{context}: {problem}"));
                }
                fetched.body
            }
            (Some(range), StatusCode::OK) => {
                // RFC 9110 §14.2 lets a server ignore Range; Floodlight's origin honours it,
                // and a player scrubbing would have downloaded the whole segment.
                self.checker.error(format!(
                    "{context}: answered 200 with the whole resource to a Range request for \
                     bytes {}-{}",
                    range.offset,
                    range.offset + range.length - 1
                ));
                let start = usize::try_from(range.offset).unwrap_or(usize::MAX);
                let end = usize::try_from(range.offset + range.length).unwrap_or(usize::MAX);
                fetched
                    .body
                    .slice(start.min(fetched.body.len())..end.min(fetched.body.len()))
            }
            (_, status) => {
                self.checker.add_bytes(fetched.body.len());
                self.checker
                    .error(format!("{context}: HTTP {}", status.as_u16()));
                return Ok(None);
            }
        };
        Ok(Some((body, arrival)))
    }
}

/// What is wrong with a 206 answer for `range` (RFC 9110 §14.4: Content-Range
/// `bytes first-last/complete-length`), if anything.
fn range_problem(range: ByteRange, fetched: &Fetched) -> Option<String> {
    let last = range.offset + range.length - 1;
    let wanted = format!("bytes {}-{last}/", range.offset);
    match fetched.content_range.as_deref() {
        Some(header) if header.starts_with(&wanted) => (fetched.body.len() as u64 != range.length)
            .then(|| {
                format!(
                    "206 with {} bytes for a {}-byte range",
                    fetched.body.len(),
                    range.length
                )
            }),
        Some(header) => Some(format!(
            "asked for bytes {}-{last} (EXT-X-BYTERANGE {}@{}), got Content-Range {header:?}",
            range.offset, range.length, range.offset
        )),
        None => Some("206 without Content-Range (RFC 9110 §15.3.7)".into()),
    }
}
