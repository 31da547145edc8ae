//! Liveness (`/health`) and readiness (`/ready`).

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use crate::state::AppState;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/health",
            get_with(health, |op| {
                op.tag("health")
                    .summary("Liveness")
                    .description("Always `{\"status\":\"ok\"}` while the process serves requests; checks no dependency.")
            }),
        )
        .api_route(
            "/ready",
            get_with(ready, |op| {
                op.tag("health")
                    .summary("Readiness")
                    .description("200 when Postgres answers, else 503. NATS is reported but does not gate readiness: writes wait in the outbox while it is away. `auth` says whether API keys are required (`off` only for running the contract suites).")
                    .response_with::<200, Json<Readiness>, _>(|r| r.description("Ready"))
                    .response_with::<503, Json<Readiness>, _>(|r| r.description("Postgres unreachable"))
            }),
        )
}

#[derive(Serialize, JsonSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, JsonSchema)]
pub struct Readiness {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// `ok` or `unreachable`.
    pub postgres: &'static str,
    /// `connected`, `disconnected`, or `not configured`.
    pub nats: &'static str,
    /// `required` (API keys needed) or `off` (`API_AUTH=off`: the API is
    /// open to anyone who reaches it).
    pub auth: &'static str,
}

async fn ready(State(state): State<AppState>) -> Response {
    let postgres_ok = shortline_shared::db::ping(&state.db).await;
    let nats = match &state.nats {
        Some(client) if shortline_shared::nats::is_connected(client) => "connected",
        Some(_) => "disconnected",
        None => "not configured",
    };
    let body = Readiness {
        status: if postgres_ok { "ok" } else { "unavailable" },
        postgres: if postgres_ok { "ok" } else { "unreachable" },
        nats,
        auth: state.config.api_auth.as_str(),
    };
    let status = if postgres_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
