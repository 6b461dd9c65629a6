//! Playback: `/live/{event_id}/master.m3u8` and `/live/{event_id}/{rendition}/{file}`
//! (media playlist, init segments, parts, segments), with LL-HLS blocking semantics.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use floodlight_media::playlist::{DeltaUpdate, MasterPlaylist};
use floodlight_media::push::RenditionKind;

use crate::error::ApiError;
use crate::origin::{LiveStream, Origin, WaitFor};
use crate::recorded::start_over::{self, ArchivedFile, TimeShift};
use crate::resource::RenditionFile;
use crate::respond::{IMMUTABLE, media_response, now_secs, playlist_response};
use crate::stream::{RenderedPlaylist, StreamCore};
use crate::window::{Awaited, Lookup, PartPosition};

/// A playlist fetched without `_HLS_msn` is the live edge, which moves every part: one
/// second (the smallest max-age) lets a CDN absorb a startup burst without holding a
/// player far behind; players then switch to blocking reloads.
const LIVE_EDGE_PLAYLIST: &str = "public, max-age=1";
/// The latest init (`init.mp4`) changes when the publisher's codec parameters do.
const REVALIDATE: &str = "no-cache";
/// The poster is replaced every few seconds; a CDN may hold one that long.
const THUMBNAIL_CACHE: &str = "public, max-age=5";
/// A blocking reload's answer is correct for its URL for good: it contains the awaited
/// part, and every viewer asking for that part gets the same bytes, which is how a CDN
/// collapses a crowd's reloads into one origin request. It may be cached while every part
/// it lists is still fetchable: a part stays fetchable three target durations after its
/// EXT-X-PART tag leaves the playlist (RFC 8216bis §6.2.2).
const BLOCKING_RESPONSE_MAX_AGE_TARGET_DURATIONS: u32 = 3;

/// The delivery directives of a media playlist request (RFC 8216bis §6.2.5).
#[derive(Debug, Default)]
pub(crate) struct HlsDirectives {
    msn: Option<String>,
    part: Option<String>,
    skip: Option<String>,
}

/// A parsed media playlist request: what to wait for and which form to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlaylistRequest {
    awaited: Option<(u64, Option<u32>)>,
    delta: DeltaUpdate,
}

impl HlsDirectives {
    /// The directives in a query string; other parameters (a playback token) are passed
    /// over without being decoded. A directive given twice is a bad request.
    fn from_query(query: &str) -> Result<Self, ApiError> {
        let mut directives = HlsDirectives::default();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "_HLS_msn" => &mut directives.msn,
                "_HLS_part" => &mut directives.part,
                "_HLS_skip" => &mut directives.skip,
                _ => continue,
            };
            if slot.is_some() {
                return Err(ApiError::BadRequest(format!(
                    "{name} appears twice (RFC 8216bis §6.2.5)"
                )));
            }
            let value = form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(_, value)| value.into_owned())
                .unwrap_or_else(|| value.to_string());
            *slot = Some(value);
        }
        Ok(directives)
    }

    fn parse(&self) -> Result<PlaylistRequest, ApiError> {
        let number = |name: &str, value: &str| {
            value.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "{name}={value:?} is not a non-negative integer (RFC 8216bis §6.2.5)"
                ))
            })
        };
        let msn = self
            .msn
            .as_deref()
            .map(|v| number("_HLS_msn", v))
            .transpose()?;
        let part = match self.part.as_deref() {
            Some(value) => Some(u32::try_from(number("_HLS_part", value)?).map_err(|_| {
                ApiError::BadRequest(format!("_HLS_part={value} is beyond any part index"))
            })?),
            None => None,
        };
        let awaited = match (msn, part) {
            (Some(msn), part) => Some((msn, part)),
            // RFC 8216bis §6.2.5.2: _HLS_part without _HLS_msn is a bad request.
            (None, Some(_)) => {
                return Err(ApiError::BadRequest(
                    "_HLS_part requires _HLS_msn (RFC 8216bis §6.2.5.2)".to_string(),
                ));
            }
            (None, None) => None,
        };
        // RFC 8216bis §6.2.5.1: YES skips old segments, v2 also skips date ranges.
        let delta = match self.skip.as_deref() {
            None => DeltaUpdate::Full,
            Some("YES") => DeltaUpdate::Skip,
            Some("v2") => DeltaUpdate::SkipV2,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "_HLS_skip={other:?} is not supported; use YES or v2 (RFC 8216bis §6.2.5.1)"
                )));
            }
        };
        Ok(PlaylistRequest { awaited, delta })
    }
}

/// `GET /live/{event_id}/master.m3u8`. Before every rendition has a part (a player that
/// opens the stream as it starts), the request waits for them, up to the blocking timeout,
/// or until a video rendition completes a segment (a rung starting later is not waited
/// for), so every variant has a BANDWIDTH from its rate or its segments. Then it answers
/// what is right to cache for a session (see `StreamCore::master_playlist`): video
/// variants that have parts, with every declared audio rendition; 503 while no video (or,
/// without video, no audio) has.
pub(crate) async fn master(
    State(origin): State<Origin>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let Path(event_id) = path?;
    if let Some(shift) = TimeShift::from_query(uri.query())? {
        return start_over::master(&origin, &event_id, uri.query(), shift).await;
    }
    let stream = origin.stream(&event_id)?;
    let (access, target_duration) = {
        let state = stream.lock();
        (state.core.access(), state.core.target_duration())
    };
    let admission = origin
        .gate()
        .admit(&event_id, access, uri.query(), now_secs(), true)?;
    let timeout = block_timeout(&origin, target_duration);
    let waited = origin
        .wait_until(&stream, WaitFor::Stream, timeout, "master", |core| {
            Ok(core.master_ready().then(|| core.master_playlist()))
        })
        .await;
    let master: Option<MasterPlaylist> = match waited {
        Ok(master) => master,
        Err(ApiError::Unavailable(_)) => stream.lock().core.master_playlist(),
        Err(error) => return Err(error),
    };
    let master = master.ok_or_else(|| {
        ApiError::Unavailable(format!(
            "event {event_id:?} has no video parts yet; retry in a moment"
        ))
    })?;
    Ok(playlist_response(
        admission.playlist(Bytes::from(master.render()), None),
        HeaderValue::from_static(LIVE_EDGE_PLAYLIST),
    ))
}

/// `GET /live/{event_id}/{rendition}/{file}`: admits the viewer, then answers the file.
pub(crate) async fn rendition_file(
    State(origin): State<Origin>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((event_id, rendition, file)) = path?;
    let Some(file) = RenditionFile::parse(&file) else {
        return Err(ApiError::NotFound(format!(
            "{file:?} is not a file of a rendition (index.m3u8, init{{version}}.mp4, {{msn}}.{{part}}.m4s, {{msn}}.m4s)"
        )));
    };
    let query = uri.query();
    if matches!(
        file,
        RenditionFile::Playlist | RenditionFile::IFramePlaylist
    ) && let Some(shift) = TimeShift::from_query(query)?
    {
        let iframes = file == RenditionFile::IFramePlaylist;
        return start_over::rendition_playlist(
            &origin, &event_id, &rendition, iframes, query, shift,
        )
        .await;
    }
    let archived = match file {
        RenditionFile::Init(Some(version)) => Some(ArchivedFile::Init(version)),
        RenditionFile::Segment(msn) => Some(ArchivedFile::Segment(msn)),
        _ => None,
    };
    let from_archive = || async {
        match archived {
            Some(file) => {
                start_over::archived_media(&origin, &event_id, &rendition, file, query, &headers)
                    .await
            }
            None => Err(ApiError::unknown_event(&event_id)),
        }
    };
    // An ended event that left memory: its segments and init versions are archived.
    let Ok(stream) = origin.stream(&event_id) else {
        return from_archive().await;
    };
    let (access, window) = {
        let state = stream.lock();
        let window = state
            .core
            .rendition(&rendition)
            .map(|window| (window.descriptor().kind, window.target_duration()));
        (state.core.access(), window)
    };
    // Checked before anything about the rendition is told.
    let admission = origin.gate().admit(
        &event_id,
        access,
        uri.query(),
        now_secs(),
        file == RenditionFile::Playlist,
    )?;
    let Some((kind, target_duration)) = window else {
        return match archived {
            Some(_) => from_archive().await,
            None => Err(ApiError::unknown_rendition(&event_id, &rendition)),
        };
    };
    let request = RenditionRequest {
        headers: &headers,
        timeout: block_timeout(&origin, target_duration),
        origin: &origin,
        stream: &stream,
        event_id: &event_id,
        rendition: &rendition,
        kind,
        target_duration,
    };
    match file {
        RenditionFile::Playlist => {
            // Only playlists take delivery directives: parts and segments skip the parse.
            let directives = HlsDirectives::from_query(uri.query().unwrap_or_default())?;
            let PlaylistRequest { awaited, delta } = directives.parse()?;
            let (rendered, cache) = match awaited {
                None => request.live_edge_playlist(delta).await?,
                Some((msn, part)) => request.blocking_reload(msn, part, delta).await?,
            };
            let text = admission.playlist(rendered.text, rendered.uri_ends.as_deref());
            Ok(playlist_response(text, cache))
        }
        RenditionFile::IFramePlaylist => {
            let playlist = request.iframe_playlist().await?;
            let text = admission.playlist(playlist, None);
            Ok(playlist_response(
                text,
                HeaderValue::from_static(LIVE_EDGE_PLAYLIST),
            ))
        }
        RenditionFile::Init(version) => match request.init(version) {
            // Aged out of the live window: the archive has it.
            Err(ApiError::Gone(_) | ApiError::NotFound(_)) if archived.is_some() => {
                from_archive().await
            }
            answer => answer,
        },
        RenditionFile::Part(position) => request.part(position).await,
        RenditionFile::Segment(msn) => match request.segment(msn) {
            Err(ApiError::Gone(_) | ApiError::NotFound(_)) if archived.is_some() => {
                from_archive().await
            }
            answer => answer,
        },
    }
}

/// An admitted request for one file of a rendition that exists: each kind of file is a
/// step of its own below.
struct RenditionRequest<'a> {
    /// The request's headers (a Range on media).
    headers: &'a HeaderMap,
    origin: &'a Origin,
    stream: &'a LiveStream,
    event_id: &'a str,
    rendition: &'a str,
    kind: RenditionKind,
    target_duration: u32,
    /// How long a request may block (RFC 8216bis §6.2.5.2).
    timeout: Duration,
}

impl RenditionRequest<'_> {
    fn unknown_rendition(&self) -> ApiError {
        ApiError::unknown_rendition(self.event_id, self.rendition)
    }

    /// A shed rendition's playlists answer 410: hls.js and AVPlayer switch to another
    /// variant when a variant playlist fails (hls.js does not retry a 4xx, it switches
    /// level), whereas EXT-X-ENDLIST would make them play the rung to its end and stop.
    /// Its parts and segments stay fetchable, so a player finishes what it buffered.
    fn refuse_if_shed(&self, core: &StreamCore) -> Result<(), ApiError> {
        match core.shed(self.rendition) {
            Some(shed) => Err(ApiError::Gone(format!(
                "{}/{} was shed from the ladder ({}); play another variant of the master playlist",
                self.event_id, self.rendition, shed.reason
            ))),
            None => Ok(()),
        }
    }

    /// Waits until `check` has an answer for this rendition, or the blocking timeout.
    async fn wait<T>(
        &self,
        what: &'static str,
        check: impl FnMut(&mut StreamCore) -> Result<Option<T>, ApiError>,
    ) -> Result<T, ApiError> {
        self.origin
            .wait_until(
                self.stream,
                WaitFor::Rendition(self.rendition),
                self.timeout,
                what,
                check,
            )
            .await
    }

    /// The playlist at the live edge (no `_HLS_msn`). A declared rendition without a part
    /// yet would answer a playlist with no segment, which players treat as an error
    /// (hls.js `levelEmptyError`) and retry only a second later: wait for the first part
    /// instead, as a blocking reload would.
    async fn live_edge_playlist(
        &self,
        delta: DeltaUpdate,
    ) -> Result<(RenderedPlaylist, HeaderValue), ApiError> {
        let rendered = self
            .wait("playlist", |core| {
                self.refuse_if_shed(core)?;
                let window = core
                    .rendition(self.rendition)
                    .ok_or_else(|| self.unknown_rendition())?;
                if window.last().is_none() && !core.is_ended() {
                    return Ok(None);
                }
                core.media_playlist_text(self.rendition, delta)
                    .map(Some)
                    .ok_or_else(|| self.unknown_rendition())
            })
            .await?;
        Ok((rendered, HeaderValue::from_static(LIVE_EDGE_PLAYLIST)))
    }

    /// A blocking reload (RFC 8216bis §6.2.5.2): answers once the playlist holds part
    /// `part` of segment `msn` (or the whole segment), 400 when that is too far ahead.
    /// The answer is cacheable while every part it lists is fetchable.
    async fn blocking_reload(
        &self,
        msn: u64,
        part: Option<u32>,
        delta: DeltaUpdate,
    ) -> Result<(RenderedPlaylist, HeaderValue), ApiError> {
        let rendered = self
            .wait("playlist", |core| {
                self.refuse_if_shed(core)?;
                let window = core
                    .rendition(self.rendition)
                    .ok_or_else(|| self.unknown_rendition())?;
                match window.awaited(msn, part) {
                    Awaited::Ready => core
                        .media_playlist_text(self.rendition, delta)
                        .map(Some)
                        .ok_or_else(|| self.unknown_rendition()),
                    Awaited::Wait => Ok(None),
                    Awaited::TooFar => Err(ApiError::BadRequest(format!(
                        "_HLS_msn={msn}{} is too far ahead of the playlist (RFC 8216bis §6.2.5.2)",
                        part.map(|p| format!("&_HLS_part={p}")).unwrap_or_default()
                    ))),
                }
            })
            .await?;
        let max_age =
            BLOCKING_RESPONSE_MAX_AGE_TARGET_DURATIONS.saturating_mul(self.target_duration);
        let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
            .unwrap_or(HeaderValue::from_static(LIVE_EDGE_PLAYLIST));
        Ok((rendered, cache))
    }

    /// The I-frame playlist of a video rendition. Not a low-latency playlist (no parts,
    /// no blocking reload): players reload it every target duration (RFC 8216bis
    /// §6.3.4). Its first request waits for the first complete segment, as the media
    /// playlist's waits for the first part.
    async fn iframe_playlist(&self) -> Result<Bytes, ApiError> {
        if self.kind != RenditionKind::Video {
            return Err(ApiError::NotFound(format!(
                "{}/{} is audio: I-frame playlists are for video renditions",
                self.event_id, self.rendition
            )));
        }
        let playlist = self
            .wait("playlist", |core| {
                self.refuse_if_shed(core)?;
                let window = core
                    .rendition(self.rendition)
                    .ok_or_else(|| self.unknown_rendition())?;
                if !window.has_complete_segment() && !core.is_ended() {
                    return Ok(None);
                }
                core.iframe_playlist(self.rendition)
                    .map(Some)
                    .ok_or_else(|| self.unknown_rendition())
            })
            .await?;
        Ok(Bytes::from(playlist.render()))
    }

    /// `init.mp4` (the latest, revalidated) or `init{version}.mp4` (immutable).
    fn init(&self, version: Option<u32>) -> Result<Response, ApiError> {
        let lookup = self
            .stream
            .lock()
            .core
            .rendition(self.rendition)
            .ok_or_else(|| self.unknown_rendition())?
            .init(version);
        let (event_id, rendition) = (self.event_id, self.rendition);
        let what = match version {
            Some(version) => format!("{event_id}/{rendition}: init version {version}"),
            None => format!("{event_id}/{rendition}: init segment"),
        };
        let bytes = found(lookup, &what)?;
        let cache = if version.is_some() {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        media_response(self.headers, bytes, self.kind, cache)
    }

    /// A part. RFC 8216bis §6.2.6: a request for the preload-hinted part blocks until the
    /// part exists.
    async fn part(&self, position: PartPosition) -> Result<Response, ApiError> {
        let what = format!(
            "{}/{}: part {}.{}",
            self.event_id, self.rendition, position.msn, position.part
        );
        let bytes = self
            .wait("part", |core| {
                match core
                    .rendition(self.rendition)
                    .ok_or_else(|| self.unknown_rendition())?
                    .part(position)
                {
                    Lookup::Wait => Ok(None),
                    lookup => found(lookup, &what).map(Some),
                }
            })
            .await?;
        media_response(self.headers, bytes, self.kind, IMMUTABLE)
    }

    /// A complete segment (for players without LL-HLS, and the DVR window).
    fn segment(&self, msn: u64) -> Result<Response, ApiError> {
        let lookup = self
            .stream
            .lock()
            .core
            .rendition(self.rendition)
            .ok_or_else(|| self.unknown_rendition())?
            .segment_bytes(msn);
        let bytes = found(
            lookup,
            &format!(
                "{}/{}: segment {msn} (complete segments only)",
                self.event_id, self.rendition
            ),
        )?;
        media_response(self.headers, bytes, self.kind, IMMUTABLE)
    }
}

/// `GET /live/{event_id}/thumbnail.jpg`: the latest poster the transcoder pushed, under
/// the same access rules as the playlists; 404 before the first.
pub(crate) async fn thumbnail(
    State(origin): State<Origin>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let Path(event_id) = path?;
    let stream = origin.stream(&event_id)?;
    let access = stream.lock().core.access();
    origin
        .gate()
        .admit(&event_id, access, uri.query(), now_secs(), false)?;
    let jpeg =
        stream.lock().core.thumbnail().ok_or_else(|| {
            ApiError::NotFound(format!("event {event_id:?} has no thumbnail yet"))
        })?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(THUMBNAIL_CACHE),
        ),
    ];
    Ok((headers, jpeg).into_response())
}

/// RFC 8216bis §6.2.5.2: `block_timeout_target_durations` target durations (in seconds
/// of f64, so no product overflows; beyond `Duration`'s range it is unbounded).
fn block_timeout(origin: &Origin, target_duration: u32) -> Duration {
    Duration::try_from_secs_f64(
        origin.config().block_timeout_target_durations * f64::from(target_duration),
    )
    .unwrap_or(Duration::MAX)
}

fn found(lookup: Lookup, what: &str) -> Result<Bytes, ApiError> {
    match lookup {
        Lookup::Found(bytes) => Ok(bytes),
        Lookup::Gone => Err(ApiError::Gone(format!(
            "{what} has aged out of the live window"
        ))),
        Lookup::NotFound | Lookup::Wait => {
            Err(ApiError::NotFound(format!("{what} does not exist")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directives(msn: Option<&str>, part: Option<&str>, skip: Option<&str>) -> HlsDirectives {
        HlsDirectives {
            msn: msn.map(str::to_string),
            part: part.map(str::to_string),
            skip: skip.map(str::to_string),
        }
    }

    #[test]
    fn delivery_directives_parse() {
        let request = directives(Some("12"), Some("3"), Some("YES"))
            .parse()
            .unwrap();
        assert_eq!(
            request,
            PlaylistRequest {
                awaited: Some((12, Some(3))),
                delta: DeltaUpdate::Skip
            }
        );
        let request = directives(Some("12"), None, Some("v2")).parse().unwrap();
        assert_eq!(
            request,
            PlaylistRequest {
                awaited: Some((12, None)),
                delta: DeltaUpdate::SkipV2
            }
        );
        assert_eq!(directives(None, None, None).parse().unwrap().awaited, None);
    }

    #[test]
    fn directives_are_read_from_the_query_around_other_parameters() {
        let directives =
            HlsDirectives::from_query("token=a.b.c&_HLS_msn=12&_HLS_part=%33&_HLS_skip=YES")
                .unwrap();
        assert_eq!(directives.msn.as_deref(), Some("12"));
        assert_eq!(directives.part.as_deref(), Some("3"));
        assert_eq!(directives.skip.as_deref(), Some("YES"));
        let none = HlsDirectives::from_query("").unwrap();
        assert_eq!(none.parse().unwrap().awaited, None);
        assert!(matches!(
            HlsDirectives::from_query("_HLS_msn=1&_HLS_msn=2"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn malformed_directives_are_bad_requests() {
        // RFC 8216bis §6.2.5.2: _HLS_part without _HLS_msn.
        assert!(matches!(
            directives(None, Some("1"), None).parse(),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            directives(Some("-1"), None, None).parse(),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            directives(Some("1"), Some("99999999999"), None).parse(),
            Err(ApiError::BadRequest(_))
        ));
        // RFC 8216bis §6.2.5.1: only YES and v2 are defined.
        assert!(matches!(
            directives(None, None, Some("NO")).parse(),
            Err(ApiError::BadRequest(_))
        ));
    }
}
