//! The OpenAPI 3 document of this API, served at `/v1/openapi.json`: each domain's part,
//! generated from its handlers' `#[utoipa::path]` annotations and its bodies' `ToSchema`
//! derives, merged here and completed with what every operation shares (the error
//! answers, paging parameters, the security scheme).
//!
//! The document and the browsable UI at `/v1/docs` are public (they describe the API,
//! they grant nothing); every operation needs an API key, declared once as the `bearer`
//! security scheme, which the UI's "Authorize" button takes.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::problem::Problem;
use super::state::AppState;
use crate::api_keys::api::ApiKeysApi;
use crate::assets::api::AssetsApi;
use crate::audit::api::AuditApi;
use crate::entitlement::api::EntitlementApi;
use crate::events::api::{EventsApi, require_title_to_create};
use crate::events::stream_keys_api::StreamKeysApi;

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

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Floodlight control API",
        description = "Events, their schedule and stream keys, VOD assets made from their \
                       archive, API keys and the audit log. Send an API key as \
                       `Authorization: Bearer <key>` on every call.",
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ControlApi;

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

/// The whole document: the domains' parts merged in; then every operation gets the error
/// answers any request can meet (see [`document_errors`]).
fn document(max_page_size: u32) -> serde_json::Value {
    let openapi = ControlApi::openapi()
        .merge_from(EventsApi::openapi())
        .merge_from(StreamKeysApi::openapi())
        .merge_from(ApiKeysApi::openapi())
        .merge_from(AuditApi::openapi())
        .merge_from(EntitlementApi::openapi())
        .merge_from(AssetsApi::openapi());
    let mut document = serde_json::to_value(openapi).unwrap_or_default();
    document_errors(&mut document);
    document_paging(&mut document, max_page_size);
    require_title_to_create(&mut document);
    document
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
