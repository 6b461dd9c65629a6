//! The OpenAPI 3 document of this API, generated from the handlers' `#[utoipa::path]`
//! annotations and the bodies' `ToSchema` derives, served at `/v1/openapi.json`.
//!
//! The document and the browsable UI at `/v1/docs` are public (they describe the API,
//! they grant nothing); every operation needs an API key, declared once as the `bearer`
//! security scheme, which the UI's "Authorize" button takes.

use axum::extract::State;
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

/// The whole document. Other areas of the control plane merge theirs in here; then every
/// operation gets the error answers any request can meet (see [`document_errors`]).
pub(crate) fn document(max_page_size: u32) -> serde_json::Value {
    let openapi = ControlApi::openapi().merge_from(crate::entitlement::EntitlementApi::openapi());
    let mut document = serde_json::to_value(openapi).unwrap_or_default();
    document_errors(&mut document);
    document_paging(&mut document, max_page_size);
    require_title_to_create(&mut document);
    document
}

/// `POST /v1/events` and `PATCH /v1/events/{id}` share one body type (every field
/// optional, `null` clears); creating needs a title, which the shared schema cannot say.
fn require_title_to_create(document: &mut serde_json::Value) {
    let schema = document
        .pointer_mut("/paths/~1v1~1events/post/requestBody/content/application~1json/schema");
    if let Some(schema) = schema {
        let shared = schema.take();
        *schema = serde_json::json!({
            "allOf": [
                shared,
                { "required": ["title"], "properties": { "title": { "type": "string" } } }
            ]
        });
    }
}

async fn openapi_json(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(document(state.config().max_page_size))
}

/// The shape of every `cursor` this API issues: `{created_at_micros}-{id}`, ids being 16
/// characters of `[0-9a-z]`; API keys' may also be the bootstrap admin key's.
const CURSOR_PATTERN: &str = "^-?[0-9]{1,18}-[0-9a-z]{16}$";
const API_KEY_CURSOR_PATTERN: &str = "^-?[0-9]{1,18}-([0-9a-z]{16}|bootstrap-admin)$";

/// Gives the list operations' `limit` its bounds (1 to `control.max_page_size`) and
/// `cursor` its shape, so generated clients never send one the API refuses.
fn document_paging(document: &mut serde_json::Value, max_page_size: u32) {
    use serde_json::{Value, json};
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let cursor = if path.starts_with("/v1/api-keys") {
            API_KEY_CURSOR_PATTERN
        } else {
            CURSOR_PATTERN
        };
        let parameters = item
            .as_object_mut()
            .into_iter()
            .flat_map(|item| item.values_mut())
            .filter_map(|operation| operation.get_mut("parameters"))
            .filter_map(Value::as_array_mut)
            .flatten();
        for parameter in parameters {
            let schema = match parameter.get("name").and_then(Value::as_str) {
                Some("limit") => {
                    json!({ "type": "integer", "minimum": 1, "maximum": max_page_size })
                }
                Some("cursor") => json!({ "type": "string", "pattern": cursor }),
                _ => continue,
            };
            parameter["schema"] = schema;
        }
    }
}

/// The answers every operation can give besides its own, and when.
const COMMON_ERRORS: &[(&str, &str, Applies)] = &[
    (
        "400",
        "A query or path parameter, or the JSON syntax, is malformed (`field` names it)",
        Applies::Always,
    ),
    (
        "401",
        "No API key, or an unknown or revoked one",
        Applies::Authenticated,
    ),
    (
        "403",
        "The key's role may not do this",
        Applies::Authenticated,
    ),
    ("404", "No such resource", Applies::WithPathParameters),
    (
        "413",
        "The body is larger than control.max_body_bytes",
        Applies::WithBody,
    ),
    (
        "415",
        "The body is not sent as application/json",
        Applies::WithBody,
    ),
    (
        "422",
        "Well-formed JSON with a field that is invalid (`field` names it)",
        Applies::WithBody,
    ),
    (
        "429",
        "Too many unknown API keys from this address lately; Retry-After says when to retry",
        Applies::Authenticated,
    ),
    (
        "503",
        "The database does not answer; retry later",
        Applies::Always,
    ),
];

#[derive(Clone, Copy)]
enum Applies {
    Always,
    Authenticated,
    WithPathParameters,
    WithBody,
}

/// Makes the document say what the API does on errors: every error answer is
/// `application/problem+json` (RFC 9457, the `Problem` schema), and each operation lists
/// the statuses any request to it can meet (a bad parameter, a missing key, a full
/// database pool), not only the ones its handler chooses. Generated clients then know
/// every answer they can get.
fn document_errors(document: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let problem = json!({
        "application/problem+json": {
            "schema": { "$ref": "#/components/schemas/Problem" }
        }
    });
    let open_routes = ["/v1/openapi.json"];
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                continue;
            }
            let authenticated = !open_routes.contains(&path.as_str())
                && operation.get("security") != Some(&json!([]));
            let with_path_parameters = path.contains('{');
            let with_body = operation.get("requestBody").is_some();
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                if (status.starts_with('4') || status.starts_with('5'))
                    && let Some(response) = response.as_object_mut()
                {
                    response.insert("content".to_string(), problem.clone());
                }
            }
            for &(status, description, applies) in COMMON_ERRORS {
                let applies = match applies {
                    Applies::Always => true,
                    Applies::Authenticated => authenticated,
                    Applies::WithPathParameters => with_path_parameters,
                    Applies::WithBody => with_body,
                };
                if applies && !responses.contains_key(status) {
                    responses.insert(
                        status.to_string(),
                        json!({ "description": description, "content": problem.clone() }),
                    );
                }
            }
        }
    }
}
