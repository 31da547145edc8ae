//! Links: creation with collision-safe short codes (or the caller's existing
//! link, `find_if_exists`), in bulk (`bulk`), edits that log one `updated`
//! event per changed field, soft deletion, lists with filters, tags (`tags`),
//! search and sort, the short URL every answer carries (`short_url`,
//! through [`present`]), statistics (`stats`), the deployment's target
//! policy (`targets`), and the write side of a link's rules (`rules`:
//! redirect type, expiry, click limit, fallback, query forwarding, targeting
//! rules, password).
//!
//! Each mutation goes through the one write path ([`crate::mutation`]): the
//! row change, its event-log row(s) and an outbox row commit together.

pub mod bulk;
pub mod codes;
pub mod model;
pub mod repo;
pub mod rules;
pub mod short_url;
pub mod stats;
pub mod tags;
pub mod targets;

use serde_json::{Value, json};
use shortline_shared::link_rules::Rule;
use sqlx::PgConnection;

use self::model::{Link, LinkPatch, NewLink};
use self::repo::{Edit, LinkFilter, LinkOrder, NewRow, PasswordWrite};
use self::rules::{REDACTED, RuleSettings};
use self::targets::TargetProblem;
use crate::error::{ApiError, FieldErrors};
use crate::ids::{LinkId, UserId};
use crate::mutation::{Changed, Committed, Mutation};
use crate::paging::{self, Listing, Page};
use crate::row_stream::{self, RowStream};
use crate::state::AppState;
use crate::users;

/// Attempts at a free generated code before giving up (the length grows by
/// one after half of them, so a crowded code space cannot wedge creation).
const MAX_CODE_ATTEMPTS: usize = 8;

/// A link `POST /urls` answers: made now, or (`find_if_exists`) one that
/// already existed.
#[derive(Debug, Clone, PartialEq)]
pub struct Made {
    pub link: Link,
    pub existing: bool,
}

/// What a new link needs before its transaction: its rule settings, its
/// targets checked against the policy and its password hashed (slow, so
/// never inside a transaction).
pub struct Prepared {
    new: NewLink,
    settings: RuleSettings,
    password_hash: Option<String>,
}

impl Prepared {
    /// The owner the new link is for.
    pub fn user_id(&self) -> UserId {
        self.new.user_id
    }
}

/// Checks a new link's targets and hashes its password.
pub async fn prepare(state: &AppState, new: NewLink) -> Result<Prepared, ApiError> {
    let settings = RuleSettings {
        redirect_type: new
            .redirect_type
            .unwrap_or(state.config.default_redirect_type),
        expires_at: new.expires_at,
        max_clicks: new.max_clicks,
        fallback_url: new.fallback_url.clone(),
        forward_query: new.forward_query,
        rules: new.rules.clone(),
    };
    check_targets(
        state,
        Some(&new.original_url),
        settings.fallback_url.as_deref(),
        &settings.rules,
    )?;
    let password_hash = match new.password.clone() {
        Some(password) => Some(password.hash().await?),
        None => None,
    };
    Ok(Prepared {
        new,
        settings,
        password_hash,
    })
}

/// Creates a link (or, with `find_if_exists`, finds the one that exists);
/// also says whether every redirect replica confirmed it.
pub async fn create(state: &AppState, new: NewLink) -> Result<Committed<Made>, ApiError> {
    let prepared = prepare(state, new).await?;
    let mut tx = Mutation::begin(state).await?;
    let made = create_in(state, &mut tx, &prepared).await?;
    let changes = (!made.existing).then(|| Changed::LinkCreated(made.link.snapshot()));
    let committed = tx.commit(changes, made).await?;
    log_created(state, &committed.value);
    Ok(committed)
}

/// Counts and logs a link made now (nothing for one found).
pub fn log_created(state: &AppState, made: &Made) {
    if !made.existing {
        state.metrics.links_created.add(1, &[]);
        let link = &made.link;
        tracing::info!(url_id = link.id.get(), short_code = %link.short_code, "link created");
    }
}

/// The write of [`create`] in a transaction of the caller's (which logs the
/// `created` change of a link made now when it commits).
pub async fn create_in(
    state: &AppState,
    conn: &mut PgConnection,
    prepared: &Prepared,
) -> Result<Made, ApiError> {
    let new = &prepared.new;
    if !users::repo::exists(conn, new.user_id).await? {
        return Err(UserId::not_found());
    }
    let domain_id = match &new.domain {
        Some(host) => Some(crate::domains::resolve(conn, host).await?),
        None => None,
    };
    if new.find_if_exists {
        let same = repo::SameLink {
            user_id: new.user_id,
            original_url: &new.original_url,
            short_code: new.short_code.as_deref(),
            domain_id,
        };
        repo::lock_same(conn, same).await?;
        if let Some(link) = repo::find_same(conn, same).await? {
            return Ok(Made {
                link: present(state, link),
                existing: true,
            });
        }
    }
    let row = NewRow {
        user_id: new.user_id,
        original_url: &new.original_url,
        title: new.title.as_deref(),
        tags: &new.tags,
        settings: &prepared.settings,
        password_hash: prepared.password_hash.as_deref(),
        domain_id,
    };
    let link = insert_with_code(state, conn, new.short_code.as_deref(), row).await?;
    Ok(Made {
        link: present(state, link),
        existing: false,
    })
}

async fn insert_with_code(
    state: &AppState,
    conn: &mut PgConnection,
    custom_code: Option<&str>,
    row: NewRow<'_>,
) -> Result<Link, ApiError> {
    if let Some(code) = custom_code {
        return repo::insert(conn, code, row)
            .await?
            .ok_or_else(|| ApiError::Conflict("short_code already exists".into()));
    }
    let base_len = usize::from(state.config.short_code_length);
    for attempt in 0..MAX_CODE_ATTEMPTS {
        let len = if attempt < MAX_CODE_ATTEMPTS / 2 {
            base_len
        } else {
            base_len + 1
        };
        let code = codes::generate(len);
        if let Some(link) = repo::insert(conn, &code, row).await? {
            return Ok(link);
        }
        state.metrics.short_code_collisions.add(1, &[]);
        tracing::warn!(attempt, "generated short code collided; retrying");
    }
    Err(ApiError::Internal(
        "no free short code after retries".into(),
    ))
}

pub async fn get(state: &AppState, id: LinkId) -> Result<Link, ApiError> {
    let mut conn = state.db.acquire().await?;
    repo::get(&mut conn, id)
        .await?
        .map(|link| present(state, link))
        .ok_or_else(LinkId::not_found)
}

/// A link as every answer shows it: with its `short_url` (the fields that
/// are not columns).
pub fn present(state: &AppState, mut link: Link) -> Link {
    link.short_url = short_url::short_url(&state.config.public_base_url, &link);
    link
}

/// [`present`] as a function that outlives the request (for streamed lists).
fn finisher(state: &AppState) -> impl Fn(&mut Link) + Send + Sync + 'static {
    let base = state.config.public_base_url.clone();
    move |link| link.short_url = short_url::short_url(&base, link)
}

/// The user a link belongs to, if the link exists.
pub async fn owner(state: &AppState, id: LinkId) -> Result<Option<UserId>, ApiError> {
    let mut conn = state.db.acquire().await?;
    Ok(repo::owner(&mut conn, id).await?)
}

/// One page of links, or every match as a stream, in `order`, with their
/// number.
pub async fn list(
    state: &AppState,
    filter: LinkFilter,
    order: LinkOrder,
    page: Page,
) -> Result<Listing<Link>, ApiError> {
    if page.is_all() {
        let mut tx = row_stream::begin(&state.db).await?;
        let total = repo::count(&mut tx, &filter).await?;
        repo::declare_all(&mut tx, &filter, order).await?;
        let rows = RowStream::start(tx).await?.finishing(finisher(state));
        return Ok(Listing::all(rows, total));
    }
    let mut tx = paging::snapshot(&state.db).await?;
    let total = repo::count(&mut tx, &filter).await?;
    let links = repo::list(&mut tx, &filter, order, page).await?;
    tx.rollback().await?;
    let links = links.into_iter().map(|l| present(state, l)).collect();
    Ok(Listing::items(links, total))
}

/// Applies a patch. Every field given bumps `updated_at`; each field whose
/// value actually changed logs one `updated` event `{field, new_value}`
/// (`rules`: the new array; a given `password` always counts as changed and
/// logs `"[redacted]"`, a removed one `null`).
pub async fn update(
    state: &AppState,
    id: LinkId,
    patch: LinkPatch,
) -> Result<Committed<Link>, ApiError> {
    check_targets(
        state,
        patch.original_url.as_deref(),
        patch.fallback_url.as_ref().and_then(Option::as_deref),
        patch.rules.as_deref().unwrap_or_default(),
    )?;
    // Hashed before the row is locked: the hash takes a while.
    let password = match patch.password.clone() {
        None => PasswordWrite::Keep,
        Some(None) => PasswordWrite::Clear,
        Some(Some(password)) => PasswordWrite::Set(password.hash().await?),
    };
    let mut tx = Mutation::begin(state).await?;
    let current = repo::lock(&mut tx, id)
        .await?
        .ok_or_else(LinkId::not_found)?
        .link;
    if patch.is_empty() {
        return tx.commit([], present(state, current)).await;
    }
    let original_url = patch
        .original_url
        .clone()
        .unwrap_or_else(|| current.original_url.clone());
    let title = patch.title.clone().unwrap_or_else(|| current.title.clone());
    let tags = patch.tags.clone().unwrap_or_else(|| current.tags.clone());
    let is_active = patch.is_active.unwrap_or(current.is_active);
    let was = current.settings();
    let settings = RuleSettings {
        redirect_type: patch.redirect_type.unwrap_or(was.redirect_type),
        expires_at: patch.expires_at.unwrap_or(was.expires_at),
        max_clicks: patch.max_clicks.unwrap_or(was.max_clicks),
        fallback_url: patch
            .fallback_url
            .clone()
            .unwrap_or_else(|| was.fallback_url.clone()),
        forward_query: patch.forward_query.unwrap_or(was.forward_query),
        rules: patch.rules.clone().unwrap_or_else(|| was.rules.clone()),
    };

    let mut changed: Vec<(&'static str, Value)> = Vec::new();
    if original_url != current.original_url {
        changed.push(("original_url", json!(original_url)));
    }
    if title != current.title {
        changed.push(("title", json!(title)));
    }
    if tags != current.tags {
        changed.push(("tags", json!(tags)));
    }
    if is_active != current.is_active {
        changed.push(("is_active", json!(is_active)));
    }
    changed.extend(changed_settings(&was, &settings));
    match &password {
        PasswordWrite::Keep => {}
        PasswordWrite::Set(_) => changed.push(("password", json!(REDACTED))),
        PasswordWrite::Clear if current.password_protected => {
            changed.push(("password", Value::Null));
        }
        PasswordWrite::Clear => {}
    }
    let edit = Edit {
        original_url: &original_url,
        title: title.as_deref(),
        tags: &tags,
        is_active,
        settings: &settings,
        password: &password,
    };
    let link = present(state, repo::update(&mut tx, id, edit).await?);
    tx.commit([Changed::LinkUpdated(link.snapshot(), changed)], link)
        .await
}

/// Each rule setting whose value differs, with its new value as the event
/// log shows it (`expires_at` in the contract's timestamp format).
fn changed_settings(was: &RuleSettings, now: &RuleSettings) -> Vec<(&'static str, Value)> {
    let mut changed = Vec::new();
    if now.redirect_type != was.redirect_type {
        changed.push(("redirect_type", json!(now.redirect_type)));
    }
    if now.expires_at != was.expires_at {
        let at = now
            .expires_at
            .as_ref()
            .map(shortline_shared::wire::format_timestamp);
        changed.push(("expires_at", json!(at)));
    }
    if now.max_clicks != was.max_clicks {
        changed.push(("max_clicks", json!(now.max_clicks)));
    }
    if now.fallback_url != was.fallback_url {
        changed.push(("fallback_url", json!(now.fallback_url)));
    }
    if now.forward_query != was.forward_query {
        changed.push(("forward_query", json!(now.forward_query)));
    }
    if now.rules != was.rules {
        changed.push(("rules", json!(now.rules)));
    }
    changed
}

/// Checks every target a write sets (`original_url` when given, the
/// fallback, each rule's) against the deployment's policy, naming each
/// refused one: `original_url` and `fallback_url` problems as today
/// (malformed 400, refused 422), a rule's always 422 at its path.
fn check_targets(
    state: &AppState,
    original_url: Option<&str>,
    fallback_url: Option<&str>,
    rules: &[Rule],
) -> Result<(), ApiError> {
    let mut malformed = FieldErrors::new();
    let mut refused = FieldErrors::new();
    let fields = original_url
        .map(|u| ("original_url".to_owned(), u))
        .into_iter()
        .chain(fallback_url.map(|u| ("fallback_url".to_owned(), u)));
    let rules = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("rules[{i}].target"), r.target.as_str()));
    for (field, url) in fields.chain(rules) {
        match state.targets.check(url) {
            Ok(()) => {}
            Err(TargetProblem::Malformed(e)) if !field.starts_with("rules") => {
                malformed.insert(field, e.problem().to_owned());
            }
            Err(problem) => {
                refused.insert(field, problem.to_string());
            }
        }
    }
    if !malformed.is_empty() {
        Err(ApiError::Validation(malformed))
    } else if !refused.is_empty() {
        Err(ApiError::Unprocessable(refused))
    } else {
        Ok(())
    }
}

/// Soft delete: the link stops redirecting and reads back inactive; a second
/// delete is a 404.
pub async fn delete(state: &AppState, id: LinkId) -> Result<Committed<()>, ApiError> {
    let mut tx = Mutation::begin(state).await?;
    let link = repo::mark_deleted(&mut tx, id)
        .await?
        .ok_or_else(LinkId::not_found)?;
    tx.commit([Changed::LinkDeleted(link.snapshot())], ()).await
}
