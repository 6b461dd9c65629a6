//! VOD playback of assets: `/vod/{asset_id}/master.m3u8`, `/vod/{asset_id}/poster.jpg` and
//! `/vod/{asset_id}/{rendition}/{file}` (`index.m3u8`, `iframes.m3u8`, `init{n}.mp4`,
//! `{n}.m4s`), all from the asset's manifest in the archive. Segment `n` is the manifest's
//! `n`-th segment of the rendition (an archived event segment or one of the asset's own),
//! init `n` its `n`-th distinct init object. An asset plays under its source event's
//! access: a token event's assets need a playback token for that event.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use floodlight_archive::{AssetId, AssetManifest, AssetRendition};
use floodlight_media::PlaybackAccess;
use floodlight_media::playlist::{
    IFrameEntry, IFramePlaylist, PlaylistType, RecordedPlaylist, SegmentEntry,
};
use floodlight_media::push::RenditionKind;

use super::Recorded;
use super::master::{Rate, RecordedRendition, recorded_master};
use crate::error::ApiError;
use crate::origin::Origin;
use crate::resource::{self, RenditionFile};
use crate::respond::{IMMUTABLE, media_response, now_secs, playlist_response};

/// Playlists of an asset change only if it is rebuilt or deleted.
const PLAYLIST_CACHE: &str = "public, max-age=60";

/// The asset's manifest, admitted: 404 for an unknown (or not yet ready, or deleted)
/// asset, the token check of its event's access otherwise.
async fn admitted<'q>(
    origin: &'q Origin,
    asset_id: &str,
    query: Option<&'q str>,
    heartbeat: bool,
) -> Result<(AssetManifest, crate::access::Admission<'q>), ApiError> {
    let unknown =
        || ApiError::NotFound(format!("no VOD asset {asset_id:?} (not ready, or deleted)"));
    let recorded: &Recorded = origin.recorded().ok_or_else(|| {
        ApiError::NotFound("VOD needs the archive, and this origin has none".into())
    })?;
    let id = AssetId::new(asset_id).map_err(|_| unknown())?;
    let manifest = recorded.manifest(&id).await?.ok_or_else(unknown)?;
    let access = manifest
        .renditions
        .first()
        .map_or(PlaybackAccess::Public, |r| r.descriptor.access);
    let admission = origin.gate().admit(
        manifest.source.event_id.as_str(),
        access,
        query,
        now_secs(),
        heartbeat,
    )?;
    Ok((manifest, admission))
}

/// `GET /vod/{asset_id}/master.m3u8`
pub(crate) async fn master(
    State(origin): State<Origin>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let Path(asset_id) = path?;
    let (manifest, admission) = admitted(&origin, &asset_id, uri.query(), true).await?;
    let rates: Vec<Rate> = manifest.renditions.iter().map(rate).collect();
    let renditions: Vec<RecordedRendition> = manifest
        .renditions
        .iter()
        .zip(&rates)
        .map(|(r, rate)| RecordedRendition {
            descriptor: &r.descriptor,
            rate: *rate,
        })
        .collect();
    let master = recorded_master(
        &renditions,
        "",
        origin.config().start_variant_max_bandwidth_bps,
    )
    .ok_or_else(|| ApiError::NotFound(format!("VOD asset {asset_id:?} has no media")))?;
    Ok(playlist_response(
        admission.playlist(Bytes::from(master.render()), None),
        HeaderValue::from_static(PLAYLIST_CACHE),
    ))
}

fn rate(rendition: &AssetRendition) -> Rate {
    Rate::measure(
        rendition
            .segments
            .iter()
            .filter(|s| !s.gap)
            .map(|s| (s.bytes, s.duration_secs(), s.iframe_bytes)),
    )
}

/// `GET /vod/{asset_id}/poster.jpg`
pub(crate) async fn poster(
    State(origin): State<Origin>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let Path(asset_id) = path?;
    let (manifest, _) = admitted(&origin, &asset_id, uri.query(), false).await?;
    let object = manifest
        .poster
        .as_deref()
        .ok_or_else(|| ApiError::NotFound(format!("VOD asset {asset_id:?} has no poster")))?;
    let recorded = origin.recorded().expect("admitted checks it");
    let jpeg = recorded
        .media(&object_store::path::Path::from(object))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("VOD asset {asset_id:?}: poster missing")))?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
        (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
    ];
    Ok((headers, jpeg).into_response())
}

/// `GET /vod/{asset_id}/{rendition}/{file}`
pub(crate) async fn rendition_file(
    State(origin): State<Origin>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((asset_id, name, file)) = path?;
    let file = RenditionFile::parse(&file).ok_or_else(|| {
        ApiError::NotFound(format!(
            "{file:?} is not a file of a VOD rendition (index.m3u8, iframes.m3u8, init{{n}}.mp4, {{n}}.m4s)"
        ))
    })?;
    let playlist_request = file == RenditionFile::Playlist;
    let (manifest, admission) = admitted(&origin, &asset_id, uri.query(), playlist_request).await?;
    let rendition = manifest.rendition(&name).ok_or_else(|| {
        ApiError::NotFound(format!("VOD asset {asset_id:?} has no rendition {name:?}"))
    })?;
    let inits = Inits::of(rendition);
    match file {
        RenditionFile::Playlist => {
            let text = media_playlist(rendition, &inits).render();
            Ok(playlist_response(
                admission.playlist(Bytes::from(text), None),
                HeaderValue::from_static(PLAYLIST_CACHE),
            ))
        }
        RenditionFile::IFramePlaylist => {
            if rendition.descriptor.kind != RenditionKind::Video {
                return Err(ApiError::NotFound(format!(
                    "{asset_id}/{name} is audio: I-frame playlists are for video renditions"
                )));
            }
            let text = iframe_playlist(rendition, &inits).render();
            Ok(playlist_response(
                admission.playlist(Bytes::from(text), None),
                HeaderValue::from_static(PLAYLIST_CACHE),
            ))
        }
        RenditionFile::Init(Some(n)) => {
            let object = inits
                .objects
                .get(n as usize)
                .ok_or_else(|| ApiError::NotFound(format!("{asset_id}/{name} has no init {n}")))?;
            serve(&origin, &headers, object, rendition.descriptor.kind).await
        }
        RenditionFile::Segment(n) => {
            let segment = usize::try_from(n)
                .ok()
                .and_then(|n| rendition.segments.get(n))
                .filter(|s| !s.gap)
                .ok_or_else(|| {
                    ApiError::NotFound(format!("{asset_id}/{name} has no segment {n}"))
                })?;
            serve(
                &origin,
                &headers,
                &segment.object,
                rendition.descriptor.kind,
            )
            .await
        }
        RenditionFile::Init(None) | RenditionFile::Part(_) => Err(ApiError::NotFound(format!(
            "a VOD rendition has no parts and no latest init: see {asset_id}/{name}/index.m3u8"
        ))),
    }
}

async fn serve(
    origin: &Origin,
    headers: &HeaderMap,
    object: &str,
    kind: RenditionKind,
) -> Result<Response, ApiError> {
    let recorded = origin.recorded().expect("admitted checks it");
    let bytes = recorded
        .media(&object_store::path::Path::from(object))
        .await?
        .ok_or_else(|| {
            tracing::warn!(object, "an asset's object is missing from the archive");
            ApiError::NotFound("this part of the asset is no longer in the archive".into())
        })?;
    media_response(headers, bytes, kind, IMMUTABLE)
}

/// The distinct init objects of a rendition, numbered in order of first use.
struct Inits<'a> {
    objects: Vec<&'a str>,
}

impl<'a> Inits<'a> {
    fn of(rendition: &'a AssetRendition) -> Inits<'a> {
        let mut objects: Vec<&str> = Vec::new();
        for segment in &rendition.segments {
            if !objects.contains(&segment.init.as_str()) {
                objects.push(&segment.init);
            }
        }
        Inits { objects }
    }

    fn uri(&self, object: &str) -> String {
        let n = self.objects.iter().position(|o| *o == object).unwrap_or(0);
        resource::init_uri(n as u32)
    }
}

fn media_playlist(rendition: &AssetRendition, inits: &Inits<'_>) -> RecordedPlaylist {
    let segments = rendition
        .segments
        .iter()
        .enumerate()
        .map(|(n, s)| SegmentEntry {
            msn: n as u64,
            duration: s.duration_secs(),
            uri: Some(resource::segment_uri(n as u64)),
            program_date_time_ms: Some(s.program_date_time_ms),
            discontinuity: s.discontinuity && n > 0,
            map_uri: inits.uri(&s.init),
            parts: Vec::new(),
            gap: s.gap,
        })
        .collect::<Vec<_>>();
    RecordedPlaylist {
        playlist_type: PlaylistType::Vod,
        target_duration: RecordedPlaylist::target_duration_for(segments.iter().map(|s| s.duration)),
        media_sequence: 0,
        segments,
        ended: true,
    }
}

fn iframe_playlist(rendition: &AssetRendition, inits: &Inits<'_>) -> IFramePlaylist {
    let entries = rendition
        .segments
        .iter()
        .enumerate()
        .map(|(n, s)| IFrameEntry {
            duration: s.duration_secs(),
            uri: resource::segment_uri(n as u64),
            byte_range: s.iframe_bytes.filter(|_| !s.gap).map(|bytes| (bytes, 0)),
            program_date_time_ms: Some(s.program_date_time_ms),
            discontinuity: s.discontinuity && n > 0,
            map_uri: inits.uri(&s.init),
        })
        .collect::<Vec<_>>();
    IFramePlaylist {
        target_duration: RecordedPlaylist::target_duration_for(entries.iter().map(|e| e.duration)),
        media_sequence: 0,
        discontinuity_sequence: 0,
        entries,
        ended: true,
    }
}
