//! `/v1/plans`: subscription plans, the event categories each includes and its
//! concurrency limit (written by admin and ops, read by the viewer service too).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::shared::now;
use crate::entitlement::{ListCursor, NewPlan, Plan};
use crate::http::fields::{self, Label};
use crate::http::{
    ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, PageQuery, Problem, Role, page_cursor,
    page_limit,
};

const PLAN_WRITERS: &[Role] = &[Role::Admin, Role::Ops];
const PLAN_READERS: &[Role] = &[Role::Admin, Role::Ops, Role::ViewerService];

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreatePlanRequest {
    /// 1 to 200 characters, not all spaces (stored trimmed).
    #[schema(
        max_length = 200,
        pattern = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    name: String,
    /// Event categories the plan includes (like events' `category`, lowercased).
    #[schema(max_items = 100, value_type = Vec<Label>)]
    categories: Vec<String>,
    /// Sessions one account may watch at once, 1 to 10000; `null` or absent: no limit.
    #[schema(minimum = 1, maximum = 10000)]
    max_concurrent_sessions: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct PlanBody {
    plan_id: String,
    name: String,
    categories: Vec<String>,
    max_concurrent_sessions: Option<u32>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<Plan> for PlanBody {
    fn from(plan: Plan) -> PlanBody {
        PlanBody {
            plan_id: plan.id,
            name: plan.name,
            categories: plan.categories,
            max_concurrent_sessions: plan.max_concurrent_sessions,
            created_at: plan.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct PlanListBody {
    items: Vec<PlanBody>,
    next_cursor: Option<String>,
}

const NAME_MAX_CHARS: usize = 200;
const MAX_PLAN_CATEGORIES: usize = 100;
const MAX_CONCURRENT_SESSIONS: u32 = 10_000;

#[utoipa::path(post, path = "/v1/plans", tag = "entitlement",
    request_body = CreatePlanRequest,
    responses(
        (status = 201, body = PlanBody),
        (status = 403, description = "Not an admin or ops key", body = Problem),
        (status = 422, description = "A field is invalid", body = Problem),
    ))]
/// Creates a subscription plan (admin, ops).
pub(super) async fn create_plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreatePlanRequest>,
) -> Result<Response, ApiError> {
    caller.require(PLAN_WRITERS)?;
    let name = fields::display_text("name", &request.name, NAME_MAX_CHARS)?.to_string();
    if request.categories.len() > MAX_PLAN_CATEGORIES {
        return Err(ApiError::invalid_field(
            "categories",
            format!("at most {MAX_PLAN_CATEGORIES} categories"),
        ));
    }
    let categories = request
        .categories
        .iter()
        .enumerate()
        .map(|(i, c)| fields::label(&format!("categories[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    if request
        .max_concurrent_sessions
        .is_some_and(|n| !(1..=MAX_CONCURRENT_SESSIONS).contains(&n))
    {
        return Err(ApiError::invalid_field(
            "max_concurrent_sessions",
            format!(
                "max_concurrent_sessions must be 1 to {MAX_CONCURRENT_SESSIONS}, or null for no limit"
            ),
        ));
    }
    let plan = state
        .store()
        .create_plan(
            &NewPlan {
                name,
                categories,
                max_concurrent_sessions: request.max_concurrent_sessions,
            },
            &caller.actor(),
            now(),
        )
        .await?;
    let location = format!("/v1/plans/{}", plan.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(PlanBody::from(plan)),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/plans", tag = "entitlement",
    params(
        ("limit" = Option<u32>, Query, description = "Items per page"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = PlanListBody),
        (status = 400, description = "Bad limit or cursor", body = Problem),
        (status = 403, body = Problem),
    ))]
/// Lists plans, newest first (admin, ops, viewer-service).
pub(super) async fn list_plans(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PlanListBody>, ApiError> {
    caller.require(PLAN_READERS)?;
    let limit = page_limit(state.config(), query.limit.as_deref())?;
    let cursor = page_cursor::<ListCursor>(query.cursor.as_deref())?;
    let page = state.store().list_plans(limit, cursor.as_ref()).await?;
    Ok(Json(PlanListBody {
        items: page.items.into_iter().map(PlanBody::from).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

#[utoipa::path(get, path = "/v1/plans/{plan_id}", tag = "entitlement",
    params(("plan_id" = String, Path)),
    responses(
        (status = 200, body = PlanBody),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    ))]
/// One plan (admin, ops, viewer-service).
pub(super) async fn get_plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(plan_id): ApiPath<String>,
) -> Result<Json<PlanBody>, ApiError> {
    caller.require(PLAN_READERS)?;
    let plan = state
        .store()
        .plan(&plan_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no plan with id {plan_id:?}")))?;
    Ok(Json(plan.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_follow_the_events_rule() {
        assert_eq!(fields::label("c", "Football").unwrap(), "football");
        assert!(fields::label("c", " Football ").is_err());
        assert!(fields::label("c", "-x").is_err());
        assert!(fields::label("c", "a b").is_err());
    }
}
