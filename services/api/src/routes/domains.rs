//! `/domains` routes: custom domains (adding and removing them is for admin
//! keys; every key may list them).

use aide::axum::ApiRouter;
use aide::axum::routing::{delete_with, get_with};
use axum::Json;
use axum::extract::State;
use axum::response::NoContent;

use super::{Created, conflict, not_found, operation};
use crate::auth::Caller;
use crate::domains::{
    self,
    model::{Domain, NewDomain},
};
use crate::error::ApiError;
use crate::extract::{Id, JsonBody};
use crate::ids::{DomainId, ResourceId};
use crate::state::AppState;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/domains",
            get_with(list_domains, list_domains_docs).post_with(add_domain, add_domain_docs),
        )
        .api_route(
            "/domains/{id}",
            delete_with(delete_domain, delete_domain_docs),
        )
}

operation! {
    /// List custom domains
    ///
    /// Every custom domain, ordered by id. Links without a `domain` live on the default
    /// domain, the host of `PUBLIC_BASE_URL`.
    fn list_domains_docs tag "domains";
}

async fn list_domains(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<Domain>>, ApiError> {
    Ok(Json(domains::list(&state.db).await?))
}

operation! {
    /// Add a custom domain
    ///
    /// Links created with `"domain": "<host>"` then answer on `https://<host>/<code>` once
    /// the host's DNS points at the edge (see the README on certificates); the same code may
    /// exist once per domain. A host that exists is 409. Admin keys only.
    fn add_domain_docs(op) tag "domains" { conflict(op, "domain already exists") }
}

async fn add_domain(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewDomain>,
) -> Result<Created<Domain>, ApiError> {
    caller.require_admin()?;
    Ok(Created(domains::create(&state.db, new).await?))
}

operation! {
    /// Delete a custom domain
    ///
    /// Only a domain without links (409 otherwise). Admin keys only.
    fn delete_domain_docs(op) tag "domains" {
        conflict(not_found(op, DomainId::NOT_FOUND), "domain still has links")
    }
}

async fn delete_domain(
    State(state): State<AppState>,
    caller: Caller,
    id: Id<DomainId>,
) -> Result<NoContent, ApiError> {
    caller.require_admin()?;
    domains::delete(&state.db, id.get()?).await?;
    Ok(NoContent)
}
