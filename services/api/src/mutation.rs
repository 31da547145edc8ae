//! The one write path. Every change to links and users runs in one
//! PostgreSQL transaction, a [`Mutation`]: the domain module writes its rows
//! through it and hands [`Mutation::commit`] what changed ([`Changed`]). The
//! commit writes, in the same transaction, the contract's event-log rows of
//! each change ([`EventType`]: `created` / `updated` / `deleted`, so
//! `GET /events` reads its own writes at once) and one outbox row per change
//! event; it commits, then propagates the change events at once (the
//! outbox's [`Propagator`](crate::outbox::Propagator)) and answers the
//! committed value with how that went ([`Committed`]).

use serde_json::{Value, json};
use shortline_shared::events::{Change, ChangeEnvelope, LinkSnapshot, UserSnapshot};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::error::ApiError;
use crate::events::{self, model::EventRecord};
use crate::ids::UserId;
use crate::outbox::{self, Propagation};
use crate::state::AppState;

/// A write in progress: a transaction that [`Mutation::commit`] finishes.
/// Dropping it rolls everything back.
pub struct Mutation<'s> {
    state: &'s AppState,
    tx: Transaction<'static, Postgres>,
}

/// What a mutation changed. Each becomes its event-log rows and one change
/// event on the change stream (see [`Changed::log`] and [`Changed::change`]).
#[derive(Debug, Clone)]
pub enum Changed {
    /// A new link: `created` with its code and target; `link.created`.
    LinkCreated(LinkSnapshot),
    /// An edited link and each field whose value changed, with the new
    /// value: one `updated` `{field, new_value}` per field and one
    /// `link.updated` naming them (nothing when no value changed).
    LinkUpdated(LinkSnapshot, Vec<(&'static str, Value)>),
    /// A soft-deleted link: `deleted` (`user_requested`); `link.deleted`.
    LinkDeleted(LinkSnapshot),
    /// A link deactivated because its user was deleted: `updated`
    /// (`is_active` false, `user_deleted`); `link.updated`.
    LinkDeactivated(LinkSnapshot),
    UserCreated(UserId),
    UserUpdated(UserId),
    UserDeleted(UserId),
}

/// The event-log types the write path writes (clients may record others
/// through `POST /events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Created,
    Updated,
    Deleted,
}

impl EventType {
    /// The contract's `event_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "created",
            EventType::Updated => "updated",
            EventType::Deleted => "deleted",
        }
    }
}

/// A committed value and how far its change events got before the answer
/// (the `Shortline-Propagation` header of link changes).
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<T> {
    pub value: T,
    pub propagation: Propagation,
}

impl<T> Committed<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Committed<U> {
        Committed {
            value: f(self.value),
            propagation: self.propagation,
        }
    }
}

impl<'s> Mutation<'s> {
    /// Starts the transaction (503 at once while PostgreSQL is known down).
    pub async fn begin(state: &'s AppState) -> Result<Self, ApiError> {
        Ok(Self {
            state,
            tx: state.db.begin().await?,
        })
    }

    /// Writes the event-log and outbox rows of `changes` (in order), commits,
    /// and propagates the change events: at once, waiting for the redirect
    /// replicas, unless every change is a user's creation or edit, which
    /// nothing reads at once (those are left to the outbox relay).
    pub async fn commit<T>(
        mut self,
        changes: impl IntoIterator<Item = Changed>,
        value: T,
    ) -> Result<Committed<T>, ApiError> {
        let mut enqueued = Vec::new();
        let mut waits = false;
        for changed in changes {
            for record in changed.log() {
                events::repo::insert(&mut self.tx, &record).await?;
            }
            if let Some(change) = changed.change() {
                let envelope = ChangeEnvelope::new(change);
                enqueued
                    .push(outbox::enqueue(&mut self.tx, &self.state.subjects, &envelope).await?);
            }
            waits |= changed.waits();
        }
        self.tx.commit().await?;
        let propagation = if waits || enqueued.is_empty() {
            let state = self.state;
            state.propagator.propagate(&state.db, enqueued).await
        } else {
            Propagation::Relayed
        };
        Ok(Committed { value, propagation })
    }
}

impl std::ops::Deref for Mutation<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Mutation<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl Changed {
    /// The contract's event-log rows of this change (link changes only).
    pub fn log(&self) -> Vec<EventRecord> {
        let row = |link: &LinkSnapshot, event_type: EventType, details: Value| {
            EventRecord::now(link.id, link.user_id, event_type.as_str(), details)
        };
        match self {
            Changed::LinkCreated(link) => vec![row(
                link,
                EventType::Created,
                json!({ "short_code": link.short_code, "original_url": link.original_url }),
            )],
            Changed::LinkUpdated(link, fields) => fields
                .iter()
                .map(|(field, new_value)| {
                    row(
                        link,
                        EventType::Updated,
                        json!({ "field": field, "new_value": new_value }),
                    )
                })
                .collect(),
            Changed::LinkDeleted(link) => vec![row(
                link,
                EventType::Deleted,
                json!({ "reason": "user_requested" }),
            )],
            Changed::LinkDeactivated(link) => vec![row(
                link,
                EventType::Updated,
                json!({ "field": "is_active", "new_value": false, "reason": "user_deleted" }),
            )],
            Changed::UserCreated(_) | Changed::UserUpdated(_) | Changed::UserDeleted(_) => {
                Vec::new()
            }
        }
    }

    /// The change event other services read (`None`: an edit that changed
    /// no value).
    pub fn change(&self) -> Option<Change> {
        let user = |id: &UserId| UserSnapshot { id: id.get() };
        Some(match self {
            Changed::LinkCreated(link) => Change::LinkCreated { link: link.clone() },
            Changed::LinkUpdated(_, fields) if fields.is_empty() => return None,
            Changed::LinkUpdated(link, fields) => Change::LinkUpdated {
                link: link.clone(),
                changed: fields.iter().map(|(f, _)| (*f).to_owned()).collect(),
            },
            Changed::LinkDeleted(link) => Change::LinkDeleted { link: link.clone() },
            Changed::LinkDeactivated(link) => Change::LinkUpdated {
                link: link.clone(),
                changed: vec!["is_active".into()],
            },
            Changed::UserCreated(id) => Change::UserCreated { user: user(id) },
            Changed::UserUpdated(id) => Change::UserUpdated { user: user(id) },
            Changed::UserDeleted(id) => Change::UserDeleted { user: user(id) },
        })
    }

    /// Whether the answer waits for this change to propagate: link changes
    /// (the redirect caches depend on them) and user deletions (which come
    /// with their links' deactivations).
    fn waits(&self) -> bool {
        !matches!(self, Changed::UserCreated(_) | Changed::UserUpdated(_))
    }
}
