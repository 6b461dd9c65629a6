//! The OpenAPI 3 document of this API, generated from the handlers' `#[utoipa::path]`
//! annotations and the bodies' `ToSchema` derives, served at `/v1/openapi.json`.
//!
//! The document and the browsable UI at `/v1/docs` are public (they describe the API,
//! they grant nothing); every operation needs an API key, declared once as the `bearer`
//! security scheme, which the UI's "Authorize" button takes.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/openapi.json", get(openapi_json))
        .route(
            "/v1/docs",
            get(|| docs_file(DOCS_HTML, "text/html; charset=utf-8")),
        )
        .route(
            "/v1/docs/swagger-ui-bundle.js",
            get(|| docs_file(SWAGGER_UI_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/v1/docs/swagger-ui.css",
            get(|| docs_file(SWAGGER_UI_CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/v1/docs/init.js",
            get(|| docs_file(DOCS_INIT_JS, "text/javascript; charset=utf-8")),
        )
}

// The browsable documentation: Swagger UI, vendored from npm's `swagger-ui-dist`
// (Apache-2.0; see vendor/swagger-ui/README.md) and compiled into the binary, so the
// page works offline and the build downloads nothing.
const DOCS_HTML: &[u8] = include_bytes!("../../vendor/swagger-ui/index.html");
const DOCS_INIT_JS: &[u8] = include_bytes!("../../vendor/swagger-ui/init.js");
const SWAGGER_UI_JS: &[u8] = include_bytes!("../../vendor/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &[u8] = include_bytes!("../../vendor/swagger-ui/swagger-ui.css");

async fn docs_file(body: &'static [u8], content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// An RFC 9457 problem document, as every error of this API is sent
/// (`application/problem+json`).
#[derive(Serialize, ToSchema)]
pub(crate) struct Problem {
    /// Always `about:blank`: `title` is the status phrase (RFC 9457 §4.2.1).
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    /// What went wrong, in words a person can act on.
    detail: String,
    /// The request field or query parameter at fault, as a path (`ingest.srt_passphrase`).
    field: Option<String>,
    /// A stable code for a refusal, when the status alone does not tell.
    reason: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Floodlight control API",
        description = "Events, their schedule and stream keys, API keys and the audit log. \
                       Send an API key as `Authorization: Bearer <key>` on every call.",
    ),
    paths(
        super::events::create_event,
        super::events::list_events,
        super::events::get_event,
        super::events::update_event,
        super::events::cancel_event,
        super::events::archive_event,
        super::events::list_transitions,
        super::stream_keys::create_key,
        super::stream_keys::list_keys,
        super::stream_keys::rotate_key,
        super::stream_keys::revoke_key,
        super::api_keys::create_api_key,
        super::api_keys::list_api_keys,
        super::api_keys::get_api_key,
        super::api_keys::revoke_api_key,
        super::audit::list_audit,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "events", description = "Scheduling, lifecycle and stream keys"),
        (name = "api-keys", description = "Keys that call this API (admin)"),
        (name = "audit", description = "Who did what, when (admin, ops)"),
    )
)]
pub(crate) struct ControlApi;

/// Declares the `bearer` security scheme the document's `security` refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: fl_api_…"))
                    .build(),
            ),
        );
    }
}

/// The whole document. Other areas of the control plane merge theirs in here.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    ControlApi::openapi().merge_from(crate::entitlement::EntitlementApi::openapi())
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
