//! How the origin answers playlists and media: content types, caching, Range. Shared by
//! live playback (`playback.rs`) and recorded playback (`recorded/`).

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use floodlight_media::clock::unix_millis;
use floodlight_media::push::RenditionKind;

use crate::error::ApiError;

const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// Parts, segments and versioned init segments never change under their URI.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Seconds since the Unix epoch, the clock token expiries are on.
pub(crate) fn now_secs() -> i64 {
    unix_millis().div_euclid(1000)
}

/// A playlist under its content type and `cache` (Cache-Control).
pub(crate) fn playlist_response(text: Bytes, cache: HeaderValue) -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(PLAYLIST_CONTENT_TYPE),
        ),
        (header::CACHE_CONTROL, cache),
    ];
    (headers, text).into_response()
}

/// A media object (init, part, segment) under its content type and caching, honouring a
/// Range request (I-frame playlists address byte ranges).
pub(crate) fn media_response(
    request: &HeaderMap,
    bytes: Bytes,
    kind: RenditionKind,
    cache: &'static str,
) -> Result<Response, ApiError> {
    let content_type = match kind {
        RenditionKind::Video => "video/mp4",
        RenditionKind::Audio => "audio/mp4",
    };
    crate::recorded::ranged(
        request,
        bytes,
        vec![
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
    )
}
