//! Start-over and time-shift: `GET /live/{event_id}/master.m3u8?start=T[&end=T2]` and the
//! same on each media and I-frame playlist, T as RFC 3339 or epoch seconds. Without `end`:
//! the event from T, from the archive, growing until the live edge (EXT-X-PLAYLIST-TYPE
//! EVENT), with EXT-X-ENDLIST once the event ended. With `end`: the finished range
//! (PLAYLIST-TYPE VOD), an instant clip made of whole segments.
//!
//! The window: `start` must lie within the start-over window behind the live edge (behind
//! the end of the archive once the event ended), else 404: the event's `dvr_window_secs`
//! (carried in its rendition descriptors), or the origin's `start_over_window_secs`.
//! Segment and init URIs are the live ones (`{msn}.m4s`, `init{v}.mp4`): the same bytes,
//! served from the live window while it holds them and from the archive after.

use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;
use floodlight_archive::{Covered, EventId, RenditionKey, RenditionName};
use floodlight_media::PlaybackAccess;
use floodlight_media::clock::unix_millis;
use floodlight_media::playlist::{
    IFrameEntry, IFramePlaylist, PlaylistType, RecordedPlaylist, SegmentEntry,
};
use floodlight_media::push::{RenditionDescriptor, RenditionKind};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Recorded;
use super::master::{Rate, RecordedRendition, recorded_master};
use crate::error::ApiError;
use crate::origin::Origin;
use crate::resource;
use crate::respond::{IMMUTABLE, media_response, now_secs, playlist_response};

/// How long after a range's end its segments are surely archived (the writer stores a
/// segment within moments of its completion; a segment lasts 2 s).
const SETTLED_MS: i64 = 10_000;
/// A playlist that grows (EVENT): players reload it every target duration.
const GROWING: &str = "public, max-age=1";
/// A finished range: its segments are archived and never change.
const FINISHED: &str = "public, max-age=3600";

/// `start` and `end` of a playback URL, Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeShift {
    pub(crate) start_ms: i64,
    pub(crate) end_ms: Option<i64>,
}

impl TimeShift {
    /// The time-shift in a query string; `None` without `start`. A malformed time, an
    /// `end` without `start` or not after it: 400 naming the parameter.
    pub(crate) fn from_query(query: Option<&str>) -> Result<Option<TimeShift>, ApiError> {
        let (mut start, mut end) = (None, None);
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let slot = match name.as_ref() {
                "start" => &mut start,
                "end" => &mut end,
                _ => continue,
            };
            if slot.is_some() {
                return Err(ApiError::BadRequest(format!("{name} appears twice")));
            }
            *slot = Some(parse_time(&name, &value)?);
        }
        match (start, end) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ApiError::BadRequest(
                "end needs start: ?start=T&end=T2 (RFC 3339 or epoch seconds)".to_string(),
            )),
            (Some(start_ms), end_ms) => {
                if let Some(end_ms) = end_ms
                    && end_ms <= start_ms
                {
                    return Err(ApiError::BadRequest(format!(
                        "end ({}) must be after start ({})",
                        rfc3339(end_ms),
                        rfc3339(start_ms)
                    )));
                }
                Ok(Some(TimeShift { start_ms, end_ms }))
            }
        }
    }

    /// The query every playlist URI of the master carries (epoch milliseconds as
    /// seconds with three decimals: one spelling per range, for caches).
    fn suffix(&self) -> String {
        let secs = |ms: i64| format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
        match self.end_ms {
            Some(end) => format!("?start={}&end={}", secs(self.start_ms), secs(end)),
            None => format!("?start={}", secs(self.start_ms)),
        }
    }
}

/// RFC 3339 (`2025-12-07T20:15:00Z`) or epoch seconds (`1765138500`, `1765138500.25`).
fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "{name}={value:?} is neither an RFC 3339 time (2025-12-07T20:15:00Z) nor epoch seconds"
        ))
    };
    if let Ok(at) = OffsetDateTime::parse(value, &Rfc3339) {
        return i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad());
    }
    let seconds: f64 = value.parse().map_err(|_| bad())?;
    // Up to year 9999; a negative or absurd number is no time of an event.
    if !(0.0..=253_402_300_799.0).contains(&seconds) {
        return Err(bad());
    }
    Ok((seconds * 1000.0).round() as i64)
}

fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// What a start-over request is answered from: the event's archived renditions, where
/// its archive ends, and whether it is still live.
struct Recording {
    event_id: EventId,
    renditions: Vec<(RenditionKey, RenditionDescriptor)>,
    access: PlaybackAccess,
    /// The event's start-over window, seconds: its descriptors' `dvr_window_secs`, or
    /// the origin's `start_over_window_secs`.
    window_secs: u64,
    live: bool,
    /// The live edge (now) while live; the end of the archive once ended.
    edge_ms: i64,
}

impl Recording {
    async fn open(origin: &Origin, recorded: &Recorded, event_id: &str) -> Result<Self, ApiError> {
        let id = EventId::new(event_id).map_err(|_| ApiError::unknown_event(event_id))?;
        let renditions = recorded.renditions(&id).await?;
        let live_stream = origin.stream(event_id).ok();
        let live_state = live_stream.as_ref().map(|stream| {
            let state = stream.lock();
            (!state.core.is_ended(), state.core.access())
        });
        if renditions.is_empty() {
            return Err(ApiError::NotFound(format!(
                "event {event_id:?} has nothing archived to start over from"
            )));
        }
        let live = live_state.is_some_and(|(live, _)| live);
        let access = match live_state {
            Some((_, access)) => access,
            // The latest descriptor decides, as live: any rendition's carries it.
            None => renditions[0].1.access,
        };
        let edge_ms = if live {
            unix_millis()
        } else {
            let mut end = None;
            for (key, _) in &renditions {
                if let Some((_, e)) = recorded.span(key).await? {
                    end = end.max(Some(e));
                }
            }
            end.ok_or_else(|| {
                ApiError::NotFound(format!("event {event_id:?} has nothing archived"))
            })?
        };
        let window_secs = renditions
            .iter()
            .find_map(|(_, d)| d.dvr_window_secs)
            .map_or(origin.config().start_over_window_secs, u64::from)
            .min(crate::config::MAX_START_OVER_WINDOW_SECS);
        Ok(Recording {
            event_id: id,
            renditions,
            access,
            window_secs,
            live,
            edge_ms,
        })
    }

    /// 404 unless `shift` starts inside the start-over window.
    fn check_window(&self, shift: &TimeShift) -> Result<(), ApiError> {
        let window_secs = self.window_secs;
        if window_secs == 0 {
            return Err(ApiError::NotFound(format!(
                "event {} has no start-over (its dvr_window_secs is 0)",
                self.event_id
            )));
        }
        let earliest = self.edge_ms - i64::try_from(window_secs * 1000).unwrap_or(i64::MAX);
        if shift.start_ms < earliest {
            return Err(ApiError::NotFound(format!(
                "start {} is outside event {}'s start-over window: the last {window_secs} s, from {}",
                rfc3339(shift.start_ms),
                self.event_id,
                rfc3339(earliest)
            )));
        }
        if shift.start_ms >= self.edge_ms {
            let edge = if self.live {
                "the live edge"
            } else {
                "the end of the event"
            };
            return Err(ApiError::NotFound(format!(
                "start {} is after {edge} ({})",
                rfc3339(shift.start_ms),
                rfc3339(self.edge_ms)
            )));
        }
        Ok(())
    }

    fn rendition(&self, name: &str) -> Result<&(RenditionKey, RenditionDescriptor), ApiError> {
        RenditionName::new(name)
            .ok()
            .and_then(|name| self.renditions.iter().find(|(k, _)| k.rendition == name))
            .ok_or_else(|| ApiError::unknown_rendition(self.event_id.as_str(), name))
    }

    /// Whether the playlist of `shift` is complete: the event ended, or the range ends
    /// before what is archived does.
    fn complete(&self, shift: &TimeShift, covered: &[Covered]) -> bool {
        let archived_end = covered.last().map(|c| c.record.end_ms());
        self.settled(shift)
            || match shift.end_ms {
                Some(end) => !self.live || archived_end.is_some_and(|e| e >= end),
                None => !self.live,
            }
    }

    /// Whether the range's playlist is a VOD playlist: the event ended, or the range
    /// ended [`SETTLED_MS`] ago, by when the archive holds it. A playlist's type never
    /// changes (RFC 8216bis §6.2.1), so a range that ends later than that is an EVENT
    /// playlist for good, ending with EXT-X-ENDLIST once archived.
    fn settled(&self, shift: &TimeShift) -> bool {
        shift
            .end_ms
            .is_some_and(|end| !self.live || end <= unix_millis() - SETTLED_MS)
    }
}

/// The recording a request is about; 404 when this origin has no archive.
async fn recording<'o>(
    origin: &'o Origin,
    event_id: &str,
) -> Result<(&'o Recorded, Recording), ApiError> {
    let recorded = origin.recorded().ok_or_else(|| {
        ApiError::NotFound("start-over needs the archive, and this origin has none".to_string())
    })?;
    Ok((recorded, Recording::open(origin, recorded, event_id).await?))
}

/// `master.m3u8?start=…`: every archived rendition with segments in the range.
pub(crate) async fn master(
    origin: &Origin,
    event_id: &str,
    query: Option<&str>,
    shift: TimeShift,
) -> Result<Response, ApiError> {
    let (recorded, recording) = recording(origin, event_id).await?;
    let admission = origin
        .gate()
        .admit(event_id, recording.access, query, now_secs(), true)?;
    recording.check_window(&shift)?;
    let end = shift.end_ms.unwrap_or(recording.edge_ms);
    let mut measured = Vec::new();
    for (key, descriptor) in &recording.renditions {
        let covered = recorded.range(key, shift.start_ms, end).await?;
        let rate = Rate::measure(covered.iter().filter(|c| !c.record.gap).map(|c| {
            (
                c.record.bytes,
                c.record.duration_secs(),
                c.record.iframe_bytes,
            )
        }));
        measured.push((descriptor, rate));
    }
    let renditions: Vec<RecordedRendition> = measured
        .iter()
        .map(|(descriptor, rate)| RecordedRendition {
            descriptor,
            rate: *rate,
        })
        .collect();
    let master = recorded_master(
        &renditions,
        &shift.suffix(),
        origin.config().start_variant_max_bandwidth_bps,
    )
    .ok_or_else(|| {
        ApiError::NotFound(format!(
            "event {event_id:?} has no archived media from {}",
            rfc3339(shift.start_ms)
        ))
    })?;
    let cache = if shift.end_ms.is_some() {
        FINISHED
    } else {
        GROWING
    };
    Ok(playlist_response(
        admission.playlist(Bytes::from(master.render()), None),
        HeaderValue::from_static(cache),
    ))
}

/// `{rendition}/index.m3u8?start=…` or `{rendition}/iframes.m3u8?start=…`.
pub(crate) async fn rendition_playlist(
    origin: &Origin,
    event_id: &str,
    rendition: &str,
    iframes: bool,
    query: Option<&str>,
    shift: TimeShift,
) -> Result<Response, ApiError> {
    let (recorded, recording) = recording(origin, event_id).await?;
    let admission = origin
        .gate()
        .admit(event_id, recording.access, query, now_secs(), !iframes)?;
    recording.check_window(&shift)?;
    let (key, descriptor) = recording.rendition(rendition)?;
    if iframes && descriptor.kind != RenditionKind::Video {
        return Err(ApiError::NotFound(format!(
            "{event_id}/{rendition} is audio: I-frame playlists are for video renditions"
        )));
    }
    let covered = recorded
        .range(key, shift.start_ms, shift.end_ms.unwrap_or(i64::MAX))
        .await?;
    if covered.is_empty() {
        return Err(ApiError::NotFound(format!(
            "{event_id}/{rendition} has no archived media from {}",
            rfc3339(shift.start_ms)
        )));
    }
    let ended = recording.complete(&shift, &covered);
    let target_duration =
        RecordedPlaylist::target_duration_for(covered.iter().map(|c| c.record.duration_secs()));
    let media_sequence = covered[0].record.msn;
    let text = if iframes {
        IFramePlaylist {
            target_duration,
            media_sequence,
            discontinuity_sequence: 0,
            entries: covered.iter().map(iframe_entry).collect(),
            ended,
        }
        .render()
    } else {
        let playlist_type = if recording.settled(&shift) {
            PlaylistType::Vod
        } else {
            PlaylistType::Event
        };
        RecordedPlaylist {
            playlist_type,
            target_duration,
            media_sequence,
            segments: covered.iter().map(segment_entry).collect(),
            ended,
        }
        .render()
    };
    let cache = if ended { FINISHED } else { GROWING };
    Ok(playlist_response(
        admission.playlist(Bytes::from(text), None),
        HeaderValue::from_static(cache),
    ))
}

fn segment_entry(covered: &Covered) -> SegmentEntry {
    let record = covered.record;
    SegmentEntry {
        msn: record.msn,
        duration: record.duration_secs(),
        uri: Some(resource::segment_uri(record.msn)),
        program_date_time_ms: Some(record.program_date_time_ms),
        discontinuity: covered.discontinuity,
        map_uri: resource::init_uri(record.init_version),
        parts: Vec::new(),
        gap: record.gap,
    }
}

fn iframe_entry(covered: &Covered) -> IFrameEntry {
    let record = covered.record;
    IFrameEntry {
        duration: record.duration_secs(),
        uri: resource::segment_uri(record.msn),
        byte_range: record
            .iframe_bytes
            .filter(|_| !record.gap)
            .map(|bytes| (bytes, 0)),
        program_date_time_ms: Some(record.program_date_time_ms),
        discontinuity: covered.discontinuity,
        map_uri: resource::init_uri(record.init_version),
    }
}

/// An archived init version or segment of an event, when the live window does not (or
/// no longer) hold it: the URIs of start-over playlists are the live ones.
pub(crate) async fn archived_media(
    origin: &Origin,
    event_id: &str,
    rendition: &str,
    file: ArchivedFile,
    query: Option<&str>,
    request: &axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let Some(recorded) = origin.recorded() else {
        return Err(ApiError::unknown_event(event_id));
    };
    let id = EventId::new(event_id).map_err(|_| ApiError::unknown_event(event_id))?;
    let renditions = recorded.renditions(&id).await?;
    let name = RenditionName::new(rendition)
        .map_err(|_| ApiError::unknown_rendition(event_id, rendition))?;
    let (key, descriptor) = renditions
        .iter()
        .find(|(k, _)| k.rendition == name)
        .ok_or_else(|| ApiError::unknown_rendition(event_id, rendition))?;
    origin
        .gate()
        .admit(event_id, descriptor.access, query, now_secs(), false)?;
    let (path, what) = match file {
        ArchivedFile::Init(version) => (key.init(version), format!("init version {version}")),
        ArchivedFile::Segment(msn) => (key.segment(msn), format!("segment {msn}")),
    };
    let bytes = recorded.media(&path).await?.ok_or_else(|| {
        ApiError::NotFound(format!("{event_id}/{rendition}: {what} is not archived"))
    })?;
    media_response(request, bytes, descriptor.kind, IMMUTABLE)
}

/// A file of a rendition the archive can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchivedFile {
    Init(u32),
    Segment(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc_3339_or_epoch_seconds() {
        let shift = TimeShift::from_query(Some("token=x&start=2025-12-07T20:15:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(shift.start_ms, 1_765_138_500_000);
        assert_eq!(shift.end_ms, None);
        let shift = TimeShift::from_query(Some("start=1765138500.25&end=1765138520"))
            .unwrap()
            .unwrap();
        assert_eq!(shift.start_ms, 1_765_138_500_250);
        assert_eq!(shift.end_ms, Some(1_765_138_520_000));
        assert_eq!(shift.suffix(), "?start=1765138500.250&end=1765138520.000");
        let offset = TimeShift::from_query(Some("start=2025-12-07T21%3A15%3A00%2B01%3A00"))
            .unwrap()
            .unwrap();
        assert_eq!(offset.start_ms, 1_765_138_500_000);
        assert_eq!(TimeShift::from_query(Some("_HLS_msn=3")).unwrap(), None);
    }

    #[test]
    fn bad_times_are_400s_naming_the_parameter() {
        let message = |query: &str| match TimeShift::from_query(Some(query)) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("{query}: {other:?}"),
        };
        assert!(message("start=yesterday").starts_with("start="));
        assert!(message("start=1765138500&end=soon").starts_with("end="));
        assert!(message("start=-5").starts_with("start="));
        assert!(message("end=1765138500").starts_with("end needs start"));
        assert!(message("start=1765138520&end=1765138500").starts_with("end ("));
        assert!(message("start=1765138500&end=1765138500").starts_with("end ("));
        assert!(message("start=1&start=2").contains("twice"));
    }
}
