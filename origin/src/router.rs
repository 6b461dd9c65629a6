//! The origin's routes: playback under `/live`, the push API under [`PUSH_PREFIX`], and
//! `/metrics`, `/healthz`, `/readyz`, each to its handler module.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use floodlight_media::push::PUSH_PREFIX;
use tower_http::cors::{Any, CorsLayer};

use crate::error::ApiError;
use crate::origin::Origin;
use crate::recorded::vod;
use crate::{metrics, playback, push, resource};

impl Origin {
    /// Every route: playback under `/live` (start-over with `?start=T`) and `/vod`, the push API under [`PUSH_PREFIX`] (behind
    /// the push token when one is configured), `/metrics`, `/healthz`, `/readyz`.
    pub fn router(&self) -> Router {
        // Players in browsers fetch from another origin than the page's (hls.js). The
        // answer is `*` whatever the request's Origin, so no `Vary`: a CDN keeps one copy
        // per URL, not one per embedding site.
        let cors = CorsLayer::new()
            .allow_origin(Any)
            .allow_methods([Method::GET, Method::HEAD])
            .vary(Vec::<HeaderName>::new());
        let playback = Router::new()
            .route("/live/{event_id}/master.m3u8", get(playback::master))
            .route(
                &format!("/live/{{event_id}}/{}", resource::THUMBNAIL),
                get(playback::thumbnail),
            )
            .route(
                "/live/{event_id}/{rendition}/{file}",
                get(playback::rendition_file),
            )
            .route("/vod/{asset_id}/master.m3u8", get(vod::master))
            .route("/vod/{asset_id}/poster.jpg", get(vod::poster))
            .route(
                "/vod/{asset_id}/{rendition}/{file}",
                get(vod::rendition_file),
            )
            .layer(cors);
        let push = Router::new()
            .route(&format!("{PUSH_PREFIX}/{{event_id}}/end"), post(push::end))
            .route(
                &format!("{PUSH_PREFIX}/{{event_id}}/{}", resource::THUMBNAIL),
                put(push::thumbnail),
            )
            .route(
                &format!("{PUSH_PREFIX}/{{event_id}}/{{rendition}}"),
                put(push::rendition).delete(push::shed),
            )
            .route(
                &format!("{PUSH_PREFIX}/{{event_id}}/{{rendition}}/init/{{version}}"),
                put(push::init),
            )
            .route(
                &format!("{PUSH_PREFIX}/{{event_id}}/{{rendition}}/part/{{msn}}/{{part}}"),
                put(push::part),
            )
            .route(
                &format!("{PUSH_PREFIX}/{{event_id}}/{{rendition}}/last"),
                get(push::last),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                push::authorize,
            ))
            .layer(DefaultBodyLimit::max(self.config().max_push_body_bytes));
        Router::new()
            .merge(playback)
            .merge(push)
            .route("/metrics", get(render_metrics))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .fallback(|| async {
                ApiError::NotFound("no such resource on this origin".to_string())
            })
            .layer(axum::middleware::map_response(count_response))
            .with_state(self.clone())
    }
}

async fn render_metrics(State(origin): State<Origin>) -> Response {
    let text = origin.render_metrics();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

/// Ready while serving; not ready once shutting down, so a load balancer drains us.
async fn ready(State(origin): State<Origin>) -> Response {
    if origin.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

async fn count_response(response: Response) -> Response {
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    ::metrics::counter!(metrics::HTTP_RESPONSES, "class" => class).increment(1);
    response
}
