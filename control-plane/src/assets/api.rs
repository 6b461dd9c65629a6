//! `/v1/assets`: VOD assets made from archived events (issue 11) — create one from a span
//! of an event, follow its build, list, cancel and delete them.
//!
//! Who may do what, as for events: admin and ops act on every asset; a broadcaster on
//! the assets of its own events (others' are 404 to it); the viewer service reads them.
//! An asset is watched under its event's rules (visibility, entitlement), shown here as
//! `visibility`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{OpenApi, ToSchema};

use super::model::{Asset, AssetCursor, AssetFilter, AssetState, CancelOutcome, NewAsset};
use super::request::{self, AssetRequest, check_range, unix_ms};
use crate::config::PublicUrls;
use crate::db::is_id;
use crate::events::{EventId, EventState, Visibility};
use crate::http::{
    ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Problem, Role, page_cursor, page_limit,
};
use crate::jobs::{BuildError, Precision};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/assets", post(create_asset).get(list_assets))
        .route("/v1/assets/{asset_id}", get(get_asset).delete(delete_asset))
        .route("/v1/assets/{asset_id}/cancel", post(cancel_asset))
}

/// The assets' part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(create_asset, list_assets, get_asset, cancel_asset, delete_asset),
    tags((name = "assets", description = "VOD assets made from archived events"))
)]
pub(crate) struct AssetsApi;

/// Roles that make and remove assets (broadcasters of their own events).
const MANAGERS: &[Role] = &[Role::Admin, Role::Ops, Role::Broadcaster];
/// Roles that may read assets (the viewer service shows the VOD catalog).
const READERS: &[Role] = &[
    Role::Admin,
    Role::Ops,
    Role::Broadcaster,
    Role::ViewerService,
];

/// An asset as the API shows it.
#[derive(Serialize, ToSchema)]
struct AssetBody {
    asset_id: String,
    title: String,
    state: AssetState,
    /// 0 to 1, for a progress bar; 1 once ready.
    progress: f64,
    /// What the build is doing (`copying segments`), or waits for (`waiting: …`).
    stage: Option<String>,
    /// Why the build failed (`failed` only).
    error: Option<String>,
    /// Once ready.
    duration_s: Option<f64>,
    /// Once ready.
    renditions: Vec<AssetRenditionBody>,
    /// The span asked for.
    source: AssetSourceBody,
    /// The span the asset covers, once ready (a `segment` asset's reaches the segment
    /// boundaries around `source`).
    range: Option<AssetRangeBody>,
    precision: Precision,
    /// Its event's: who may watch it.
    visibility: Visibility,
    /// Made by its event's automatic recording (`record`), not through this API.
    recording: bool,
    owner: Option<String>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
    /// When a job runner first started it.
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    started_at: Option<OffsetDateTime>,
    /// When it became ready, failed or was cancelled.
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<OffsetDateTime>,
    playback: AssetPlaybackBody,
}

/// One rendition, as its master-playlist entry describes it.
#[derive(Serialize, ToSchema)]
struct AssetRenditionBody {
    name: String,
    /// `video` or `audio`.
    kind: String,
    /// RFC 6381 codecs, e.g. `avc1.64001f`.
    codecs: String,
    width: Option<u32>,
    height: Option<u32>,
    /// Peak bit rate, bits/s (the playlist's BANDWIDTH).
    bandwidth: Option<u64>,
    duration_s: f64,
}

#[derive(Serialize, ToSchema)]
struct AssetSourceBody {
    event_id: String,
    /// `null`: from the event's first archived instant.
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    start: Option<OffsetDateTime>,
    /// `null`: to the event's end.
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    end: Option<OffsetDateTime>,
}

#[derive(Serialize, ToSchema)]
struct AssetRangeBody {
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    start: OffsetDateTime,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    end: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
struct AssetPlaybackBody {
    /// The VOD master playlist; it plays once the asset is ready.
    hls: String,
    /// The poster image, once built (`null` before, or when the build made none).
    poster: Option<String>,
}

impl AssetBody {
    fn new(asset: &Asset, urls: &PublicUrls) -> AssetBody {
        let ready = asset.state == AssetState::Ready;
        AssetBody {
            asset_id: asset.id.clone(),
            title: asset.title.clone(),
            state: asset.state,
            progress: asset.progress,
            stage: asset.stage.clone(),
            error: asset.error.clone(),
            duration_s: asset.duration_ms.map(|ms| ms as f64 / 1000.0),
            renditions: asset
                .renditions
                .iter()
                .map(|r| AssetRenditionBody {
                    name: r.name.clone(),
                    kind: r.kind.clone(),
                    codecs: r.codecs.clone(),
                    width: r.width,
                    height: r.height,
                    bandwidth: r.bandwidth_bps,
                    duration_s: r.duration_ms as f64 / 1000.0,
                })
                .collect(),
            source: AssetSourceBody {
                event_id: asset.event_id.clone(),
                start: asset.start,
                end: asset.end,
            },
            range: asset
                .range
                .map(|(start, end)| AssetRangeBody { start, end }),
            precision: asset.precision,
            visibility: asset.visibility,
            recording: asset.recording,
            owner: asset.owner.clone(),
            created_at: asset.created_at,
            updated_at: asset.updated_at,
            started_at: asset.started_at,
            finished_at: asset.finished_at,
            playback: AssetPlaybackBody {
                hls: urls.vod_master_playlist(&asset.id),
                poster: (ready && asset.poster).then(|| urls.vod_poster(&asset.id)),
            },
        }
    }
}

/// The archive's answer as an API error naming what went wrong.
fn archive_error(event_id: &str, error: BuildError) -> ApiError {
    match error {
        BuildError::Fatal(reason) => ApiError::Archive {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            reason: "archive_unreadable",
            detail: format!("the archive of event {event_id} cannot be read: {reason}"),
        },
        BuildError::Retryable(reason) => ApiError::Archive {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "archive_unavailable",
            detail: format!("the archive does not answer ({reason}); retry later"),
        },
        BuildError::Cancelled => ApiError::Archive {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "archive_unavailable",
            detail: "the archive look-up was cancelled; retry later".to_string(),
        },
    }
}

/// `field` at fault, with a status other than 422.
fn field_error(status: StatusCode, field: &str, detail: String) -> ApiError {
    ApiError::Invalid {
        status,
        field: Some(field.to_string()),
        detail,
    }
}

#[utoipa::path(post, path = "/v1/assets", tag = "assets",
    request_body = AssetRequest,
    responses(
        (status = 202, description = "Queued: follow it at Location", body = AssetBody),
        (status = 404, description = "No such event (`field`: `source.event_id`)", body = Problem),
        (status = 409, description = "The event never published, or nothing of it is archived (`field`: `source.event_id`)", body = Problem),
        (status = 422, description = "A field is invalid, `source.end` is not after `source.start`, or the range is outside what the archive holds (the detail gives the archived span); `field` names it", body = Problem),
        (status = 500, description = "The event's archive cannot be read (`reason`: `archive_unreadable`; the detail names the object)", body = Problem),
        (status = 503, description = "No archive is configured (`reason`: `archive_not_configured`), or it does not answer (`archive_unavailable`)", body = Problem),
    ))]
/// Makes a VOD asset of a span of an event (admin, ops, broadcaster of the event). It is
/// built in the background: the answer is the queued asset.
async fn create_asset(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<AssetRequest>,
) -> Result<Response, ApiError> {
    caller.require(MANAGERS)?;
    let title = request::title(body.title.as_deref())?;
    let source = &body.source;
    let event_id = EventId::parse(&source.event_id).ok_or_else(|| {
        ApiError::invalid_field(
            "source.event_id",
            "source.event_id must be an event id: 16 characters of 0-9 and a-z",
        )
    })?;
    let start = source
        .start
        .as_deref()
        .map(|t| request::time("source.start", t))
        .transpose()?;
    let end = source
        .end
        .as_deref()
        .map(|t| request::time("source.end", t))
        .transpose()?;
    if let (Some(start), Some(end)) = (start, end)
        && end <= start
    {
        return Err(ApiError::invalid_field(
            "source.end",
            "source.end must be after source.start",
        ));
    }
    let no_event = || {
        ApiError::missing_reference(
            "source.event_id",
            format!("no event with id {:?}", event_id.as_str()),
        )
    };
    let event = state
        .store()
        .event(event_id.as_str())
        .await?
        .ok_or_else(no_event)?;
    if !caller.sees_all() && event.settings.owner.as_deref() != Some(caller.principal.as_str()) {
        return Err(no_event());
    }
    let published = state
        .store()
        .transitions(&event.id)
        .await?
        .iter()
        .any(|transition| transition.to == EventState::Live);
    if !published {
        return Err(field_error(
            StatusCode::CONFLICT,
            "source.event_id",
            format!(
                "event {event_id} never published (it is {}): there is nothing to make an asset of",
                event.state
            ),
        ));
    }
    if event.state == EventState::Live && end.is_none() {
        return Err(ApiError::invalid_field(
            "source.end",
            format!(
                "event {event_id} is live: give source.end, or leave it out once the event \
                 has ended"
            ),
        ));
    }
    let builder = state.asset_builder().ok_or_else(|| ApiError::Archive {
        status: StatusCode::SERVICE_UNAVAILABLE,
        reason: "archive_not_configured",
        detail: "the archive is not configured ([archive] enabled = false): assets cannot be \
                 built"
            .to_string(),
    })?;
    let archived = super::archived_range(builder.as_ref(), event_id.as_str())
        .await
        .map_err(|error| archive_error(event_id.as_str(), error))?
        .ok_or_else(|| {
            field_error(
                StatusCode::CONFLICT,
                "source.event_id",
                format!("nothing of event {event_id} is in the archive"),
            )
        })?;
    check_range(
        event_id.as_str(),
        start.map(unix_ms),
        end.map(unix_ms),
        archived,
    )?;
    let new = NewAsset {
        title: title.unwrap_or_else(|| event.settings.title.clone()),
        event_id: event_id.into_string(),
        start,
        end,
        precision: body.precision.unwrap_or_default(),
        owner: event.settings.owner.clone(),
    };
    let asset = state
        .store()
        .create_asset(&new, &caller.actor(), OffsetDateTime::now_utc())
        .await?;
    state.jobs().wake();
    tracing::info!(
        asset_id = %asset.id,
        event_id = %asset.event_id,
        precision = asset.precision.as_str(),
        "asset queued"
    );
    let location = format!("/v1/assets/{}", asset.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(AssetBody::new(&asset, state.urls())),
    )
        .into_response())
}

/// Query parameters as text, so that a bad value gets an error naming its parameter.
#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    event_id: Option<String>,
    state: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct AssetListBody {
    items: Vec<AssetBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

fn list_filter(query: &ListQuery, caller: &Caller) -> Result<AssetFilter, ApiError> {
    let mut filter = AssetFilter {
        owner: (caller.role == Role::Broadcaster).then(|| caller.principal.clone()),
        ..AssetFilter::default()
    };
    if let Some(ids) = &query.event_id {
        for id in ids.split(',') {
            if !is_id(id) {
                return Err(ApiError::bad_parameter(
                    "event_id",
                    format!("event_id {id:?} is not an event id (16 characters of 0-9 and a-z)"),
                ));
            }
            filter.event_ids.push(id.to_string());
        }
    }
    if let Some(states) = &query.state {
        for name in states.split(',') {
            let state = name.parse::<AssetState>().map_err(|()| {
                ApiError::bad_parameter(
                    "state",
                    format!(
                        "state {name:?} is not one of queued, processing, ready, failed, cancelled"
                    ),
                )
            })?;
            filter.states.push(state);
        }
    }
    Ok(filter)
}

#[utoipa::path(get, path = "/v1/assets", tag = "assets",
    params(
        ("limit" = Option<u32>, Query, description = "Items per page"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("event_id" = Option<String>, Query, description = "Comma-separated event ids, any of them",
            pattern = r"^[0-9a-z]{16}(,[0-9a-z]{16})*$"),
        ("state" = Option<String>, Query, description = "Comma-separated states, any of them",
            pattern = r"^(queued|processing|ready|failed|cancelled)(,(queued|processing|ready|failed|cancelled))*$"),
    ),
    responses(
        (status = 200, body = AssetListBody),
        (status = 400, description = "A bad parameter; `field` names it", body = Problem),
    ))]
/// Lists assets, newest first, filtered by event and state; broadcasters see only their
/// own. Deleted assets are not listed.
async fn list_assets(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<AssetListBody>, ApiError> {
    caller.require(READERS)?;
    let limit = page_limit(state.config(), query.limit.as_deref())?;
    let cursor = page_cursor::<AssetCursor>(query.cursor.as_deref())?;
    let filter = list_filter(&query, &caller)?;
    let page = state
        .store()
        .list_assets(&filter, limit, cursor.as_ref())
        .await?;
    Ok(Json(AssetListBody {
        items: page
            .assets
            .iter()
            .map(|asset| AssetBody::new(asset, state.urls()))
            .collect(),
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    }))
}

/// The asset `asset_id` if the caller may see it; 404 otherwise.
async fn visible_asset(
    state: &AppState,
    caller: &Caller,
    asset_id: &str,
) -> Result<Asset, ApiError> {
    let not_found = || ApiError::not_found(format!("no asset with id {asset_id:?}"));
    let asset = state.store().asset(asset_id).await?.ok_or_else(not_found)?;
    if caller.role == Role::Broadcaster && asset.owner.as_deref() != Some(caller.principal.as_str())
    {
        return Err(not_found());
    }
    Ok(asset)
}

#[utoipa::path(get, path = "/v1/assets/{asset_id}", tag = "assets",
    params(("asset_id" = String, Path)),
    responses(
        (status = 200, description = "The asset and its build", body = AssetBody),
        (status = 404, body = Problem),
    ))]
/// One asset: its state, progress, what was built, and where it plays.
async fn get_asset(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(asset_id): ApiPath<String>,
) -> Result<Json<AssetBody>, ApiError> {
    caller.require(READERS)?;
    let asset = visible_asset(&state, &caller, &asset_id).await?;
    Ok(Json(AssetBody::new(&asset, state.urls())))
}

#[utoipa::path(post, path = "/v1/assets/{asset_id}/cancel", tag = "assets",
    params(("asset_id" = String, Path)),
    responses(
        (status = 200, description = "The asset, now cancelled (its build stops within a second)", body = AssetBody),
        (status = 404, body = Problem),
        (status = 409, description = "It is ready or failed already", body = Problem),
    ))]
/// Cancels a queued or processing asset; cancelling a cancelled one changes nothing.
async fn cancel_asset(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(asset_id): ApiPath<String>,
) -> Result<Json<AssetBody>, ApiError> {
    caller.require(MANAGERS)?;
    let asset = visible_asset(&state, &caller, &asset_id).await?;
    match state
        .store()
        .cancel_asset(&asset.id, &caller.actor(), OffsetDateTime::now_utc())
        .await?
    {
        CancelOutcome::Cancelled(asset) => {
            state.jobs().interrupt(&asset.id);
            state.jobs().wake();
            Ok(Json(AssetBody::new(&asset, state.urls())))
        }
        CancelOutcome::Finished(now) => Err(ApiError::conflict(format!(
            "the asset is {now}; only queued or processing assets cancel (delete it instead)"
        ))),
        CancelOutcome::NotFound => Err(ApiError::not_found(format!(
            "no asset with id {asset_id:?}"
        ))),
    }
}

#[utoipa::path(delete, path = "/v1/assets/{asset_id}", tag = "assets",
    params(("asset_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted: gone from the API at once; its objects are removed from the object store in the background"),
        (status = 404, body = Problem),
    ))]
/// Deletes an asset in any state: a build in progress stops, the asset leaves the API at
/// once, and a job removes what only it uses from the object store (retried until done).
async fn delete_asset(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(asset_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(MANAGERS)?;
    let asset = visible_asset(&state, &caller, &asset_id).await?;
    if !state
        .store()
        .delete_asset(&asset.id, &caller.actor(), OffsetDateTime::now_utc())
        .await?
    {
        return Err(ApiError::not_found(format!(
            "no asset with id {asset_id:?}"
        )));
    }
    state.jobs().interrupt(&asset.id);
    state.jobs().wake();
    Ok(StatusCode::NO_CONTENT)
}
