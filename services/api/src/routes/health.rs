//! Liveness (`/health`) and readiness (`/ready`).

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use schemars::JsonSchema;
use serde::Serialize;
use shortline_shared::probe::{Readiness, ReadyWhen};

use super::operation;
use crate::state::AppState;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route("/health", get_with(health, health_docs))
        .api_route("/ready", get_with(ready, ready_docs))
}

#[derive(Serialize, JsonSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

operation! {
    /// Liveness
    ///
    /// Always `{"status":"ok"}` while the process serves requests; checks no dependency.
    fn health_docs tag "health";
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// What the api adds to the shared readiness body.
#[derive(Serialize, JsonSchema)]
pub struct ApiReadiness {
    /// `required` (API keys needed) or `off` (`API_AUTH=off`: the API is
    /// open to anyone who reaches it).
    pub auth: &'static str,
}

operation! {
    /// Readiness
    ///
    /// 200 when Postgres answers, else 503. `postgres`, `valkey` and `nats` are each `ok`,
    /// `unreachable` or `not configured`; Valkey and NATS are reported but do not gate
    /// readiness: writes wait in the outbox while NATS is away. `auth` says whether API keys
    /// are required (`off` only for running the contract suites).
    fn ready_docs(op) tag "health" {
        op.response_with::<200, Json<Readiness<ApiReadiness>>, _>(|r| r.description("Ready"))
            .response_with::<503, Json<Readiness<ApiReadiness>>, _>(|r| {
                r.description("Postgres unreachable")
            })
    }
}

/// The shared readiness answer over the api's dependencies: only
/// PostgreSQL gates it.
async fn ready(State(state): State<AppState>) -> Response {
    let auth = state.config.api_auth.as_str();
    state
        .dependencies()
        .ready(ReadyWhen::PostgresUp, ApiReadiness { auth })
        .await
}
