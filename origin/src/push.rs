//! The push API handlers (`floodlight_media::push` is the contract): the transcoder
//! declares renditions, then pushes init segments and parts in order, then the end. With
//! `push_token` configured, every route requires it as a bearer token.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use floodlight_archive::{EventId, RenditionKey, RenditionName};
use floodlight_media::PlaybackAccess;
use floodlight_media::push::{LastPart, PartMeta, RenditionDescriptor};
use serde::Deserialize;
use tracing::{debug, info, warn};

use crate::error::ApiError;
use crate::metrics;
use crate::origin::{EndReason, Origin};
use crate::resource::is_valid_event_id;
use crate::stream::{Declared, validate_descriptor};
use crate::window::Pushed;
use floodlight_media::clock::unix_millis;

/// Guards every push route: 401 without the configured bearer token. Refusals are logged
/// at debug level only (a scanner must not flood the log) and never with the credential.
pub(crate) async fn authorize(
    State(origin): State<Origin>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(error) = origin.check_push_credential(request.headers()) {
        debug!(path = request.uri().path(), "push request refused: {error}");
        return error.into_response();
    }
    next.run(request).await
}

/// `PUT {PUSH_PREFIX}/{event_id}/{rendition}`: JSON `RenditionDescriptor`. 201 when it
/// adds the rendition (or starts a new session of an ended stream), 204 for an update.
pub(crate) async fn rendition(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<RenditionDescriptor>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((event_id, rendition)) = path?;
    let Json(descriptor) = body?;
    if !is_valid_event_id(&event_id) {
        return Err(ApiError::BadRequest(format!(
            "event id {event_id:?} must be 1-128 letters, digits, '-' or '_'"
        )));
    }
    if descriptor.name != rendition {
        return Err(ApiError::BadRequest(format!(
            "descriptor name {:?} does not match the rendition {rendition:?} in the path",
            descriptor.name
        )));
    }
    validate_descriptor(&descriptor).map_err(|e| ApiError::push(&event_id, &rendition, e))?;
    let stream = origin.stream_or_create(&event_id)?;
    let _span = stream.span.enter();
    let mut state = stream.lock();
    let part_target_ms = descriptor.part_target_ms;
    let codecs = descriptor.codecs.clone();
    let archived = stream.archive.as_ref().map(|_| descriptor.clone());
    let declared = state
        .declare(descriptor)
        .map_err(|e| ApiError::push(&event_id, &rendition, e))?;
    if let (Some(archive), Some(descriptor)) = (&stream.archive, archived) {
        archive.descriptor(descriptor);
    }
    state.track_rendition(&rendition);
    state.notify(Some(&rendition));
    stream.notify_stream();
    let target_duration = state.core.target_duration();
    let access = state.core.access();
    if access == PlaybackAccess::Token
        && declared != Declared::Updated
        && !origin.has_playback_keys()
    {
        warn!(
            rendition,
            "token stream declared, but origin.playback_keys is empty: no token verifies, every \
             playback request will be refused 403"
        );
    }
    match declared {
        Declared::Added => info!(
            rendition,
            codecs,
            part_target_ms,
            target_duration,
            ?access,
            "rendition declared"
        ),
        Declared::Updated => info!(rendition, codecs, "rendition descriptor updated"),
        Declared::Resumed => info!(
            rendition,
            codecs, "shed rendition declared again: back in the master playlist with its next part"
        ),
        Declared::NewSession => {
            ::metrics::gauge!(metrics::ACTIVE_STREAMS).increment(1.0);
            info!(
                rendition,
                codecs,
                part_target_ms,
                target_duration,
                ?access,
                "ended stream went live again: new session"
            );
        }
    }
    Ok(if declared == Declared::Updated {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// `PUT {PUSH_PREFIX}/{event_id}/{rendition}/init/{version}`: an init segment version.
pub(crate) async fn init(
    State(origin): State<Origin>,
    path: Result<Path<(String, String, u32)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((event_id, rendition, version)) = path?;
    let bytes = body?;
    let stream = origin.stream(&event_id)?;
    let _span = stream.span.enter();
    let mut state = stream.lock();
    let len = bytes.len();
    let pushed = state
        .core
        .push_init(&rendition, version, bytes.clone())
        .map_err(|e| ApiError::push(&event_id, &rendition, e))?;
    state.touch();
    match pushed {
        Pushed::Stored => {
            info!(rendition, version, len, "init segment stored");
            if let Some(archive) = &stream.archive {
                archive.init(&rendition, version, bytes);
            }
            Ok(StatusCode::CREATED)
        }
        Pushed::Duplicate => Ok(StatusCode::NO_CONTENT),
    }
}

/// `PUT {PUSH_PREFIX}/{event_id}/{rendition}/part/{msn}/{part}?{PartMeta}`: one part.
/// Stored parts wake the requests blocked on them.
pub(crate) async fn part(
    State(origin): State<Origin>,
    path: Result<Path<(String, String, u64, u32)>, PathRejection>,
    query: Result<Query<PartMeta>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((event_id, rendition, msn, part)) = path?;
    let Query(meta) = query?;
    let bytes = body?;
    if (meta.msn, meta.part) != (msn, part) {
        return Err(ApiError::BadRequest(format!(
            "the path names part {msn}.{part} but the query says {}.{}",
            meta.msn, meta.part
        )));
    }
    let stream = origin.stream(&event_id)?;
    let _span = stream.span.enter();
    let len = bytes.len();
    let now = unix_millis();
    {
        let mut state = stream.lock();
        let over_target_before = state.core.segments_over_target();
        let window = state.core.rendition(&rendition);
        let skipped = window.and_then(|w| w.skipped_segments(&meta));
        let restarts = window.is_some_and(|w| w.resumes_far_ahead(&meta));
        let pushed = state
            .core
            .push_part(&rendition, &meta, bytes, now)
            .map_err(|e| {
                debug!(rendition, msn, part, error = %e, "part refused");
                ApiError::push(&event_id, &rendition, e)
            })?;
        state.touch();
        if pushed == Pushed::Duplicate {
            return Ok(StatusCode::NO_CONTENT);
        }
        stream.archive_completed(&mut state);
        state.report_over_target(&event_id, over_target_before);
        if restarts {
            info!(
                rendition,
                msn, "resumed rendition back after its window: starts over at this segment"
            );
        }
        if let Some(skipped) = skipped {
            ::metrics::counter!(metrics::GAP_SEGMENTS).increment(skipped.end - skipped.start);
            info!(
                rendition,
                first = skipped.start,
                last = skipped.end - 1,
                "segment numbers skipped: listed as EXT-X-GAP"
            );
        }
        state.notify(Some(&rendition));
    }
    stream.notify_stream();
    ::metrics::counter!(metrics::PARTS_RECEIVED).increment(1);
    ::metrics::counter!(metrics::PART_BYTES_RECEIVED).increment(len as u64);
    // Ingest-to-playable: the part is servable from this moment.
    let latency_ms = now.saturating_sub(meta.last_frame_arrival_ms).max(0);
    ::metrics::histogram!(metrics::PART_READY_LATENCY).record(latency_ms as f64 / 1000.0);
    Ok(StatusCode::CREATED)
}

/// `POST {PUSH_PREFIX}/{event_id}/end`: the stream ended for good; playlists get
/// EXT-X-ENDLIST and every blocked request is answered.
pub(crate) async fn end(
    State(origin): State<Origin>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(event_id) = path?;
    let stream = origin.stream(&event_id)?;
    let mut state = stream.lock();
    stream.end(&mut state, EndReason::Pushed);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET {PUSH_PREFIX}/{event_id}/{rendition}/last`: where a taking-over transcoder
/// continues the numbering.
pub(crate) async fn last(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<LastPart>, ApiError> {
    let Path((event_id, rendition)) = path?;
    let in_memory = origin.stream(&event_id).ok().and_then(|stream| {
        let state = stream.lock();
        state
            .core
            .rendition(&rendition)
            .and_then(|w| w.last().cloned())
    });
    if let Some(last) = in_memory {
        return Ok(Json(last));
    }
    // A stream this origin no longer holds (ended and dropped, or the origin restarted):
    // the archive remembers where its numbering got to, so a publisher coming back
    // continues it rather than restarting at MSN 0 over archived segments.
    if let Some(recorded) = origin.recorded()
        && let (Ok(event), Ok(name)) = (EventId::new(&event_id), RenditionName::new(&rendition))
        && let Some(record) = recorded
            .last_record(&RenditionKey::new(event, name))
            .await?
    {
        return Ok(Json(LastPart {
            msn: record.msn,
            part: 0,
            ends_segment: true,
            init_version: record.init_version,
        }));
    }
    Err(ApiError::NotFound(format!(
        "{event_id}/{rendition}: no part pushed yet"
    )))
}

/// Longest `reason` a shed request may give; it is shown on the event's status.
const MAX_SHED_REASON_CHARS: usize = 200;

/// The query of `DELETE {PUSH_PREFIX}/{event_id}/{rendition}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ShedQuery {
    reason: Option<String>,
}

/// `DELETE {PUSH_PREFIX}/{event_id}/{rendition}?reason=…`: the transcoder stopped
/// producing the rendition (a rung shed under load). It leaves the master playlist and the
/// rendition reports; its playlist answers 410 from now on (see the README: players move to
/// another variant on a playlist error, where EXT-X-ENDLIST would end their playback), and
/// its blocked requests are answered. 204, also when it was shed already.
pub(crate) async fn shed(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<ShedQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((event_id, rendition)) = path?;
    let Query(query) = query?;
    let reason = query
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "unspecified".to_string());
    if reason.chars().count() > MAX_SHED_REASON_CHARS || reason.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "reason must be at most {MAX_SHED_REASON_CHARS} characters, without control characters"
        )));
    }
    let stream = origin.stream(&event_id)?;
    let _span = stream.span.enter();
    {
        let mut state = stream.lock();
        let newly = state
            .core
            .shed_rendition(&rendition, &reason, unix_millis())
            .map_err(|e| ApiError::push(&event_id, &rendition, e))?;
        state.touch();
        if !newly {
            return Ok(StatusCode::NO_CONTENT);
        }
        stream.archive_completed(&mut state);
        state.notify(None);
    }
    stream.notify_stream();
    ::metrics::counter!(metrics::RENDITIONS_SHED).increment(1);
    warn!(rendition, reason, "rendition shed by the transcoder");
    Ok(StatusCode::NO_CONTENT)
}

/// A JPEG starts with the SOI marker and the first marker's FF (ITU-T T.81 §B.1.1.3).
const JPEG_SIGNATURE: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// `PUT {PUSH_PREFIX}/{event_id}/thumbnail.jpg`: the stream's latest JPEG poster, served
/// at `/live/{event_id}/thumbnail.jpg`. 204; 413 over `max_thumbnail_bytes`; 415 for a
/// body that is not a JPEG.
pub(crate) async fn thumbnail(
    State(origin): State<Origin>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(event_id) = path?;
    let bytes = body?;
    let max = origin.config().max_thumbnail_bytes;
    if bytes.len() > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "the thumbnail is {} bytes, over origin.max_thumbnail_bytes ({max})",
            bytes.len()
        )));
    }
    if !bytes.starts_with(&JPEG_SIGNATURE) {
        return Err(ApiError::UnsupportedMediaType(
            "the thumbnail must be a JPEG (starting FF D8 FF)".to_string(),
        ));
    }
    let stream = origin.stream(&event_id)?;
    let mut state = stream.lock();
    if state.core.is_ended() {
        return Err(ApiError::Conflict(format!(
            "{event_id}: the stream has ended; push a rendition descriptor to start a new session"
        )));
    }
    state.core.set_thumbnail(bytes);
    state.touch();
    Ok(StatusCode::NO_CONTENT)
}
