//! Typed ids: a link's id, a user's id and an API key's id are different
//! types, so one cannot be passed where another is meant. On the wire and in
//! the database each is the plain integer (`serde`, `schemars` and `sqlx`
//! see through it).
//!
//! Each id type also names its resource's 404: [`LinkId::not_found`] is the
//! one `URL not found` answer, wherever it comes from.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// An id that addresses a resource: how to make one and what its 404 says.
pub trait ResourceId: Copy + From<i64> {
    /// The message of the resource's 404.
    const NOT_FOUND: &'static str;

    /// The 404 of an id that names no such resource.
    fn not_found() -> ApiError {
        ApiError::NotFound(Self::NOT_FOUND)
    }
}

macro_rules! resource_id {
    ($(#[$doc:meta])* $name:ident, $not_found:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            Serialize, Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const fn new(id: i64) -> Self {
                Self(id)
            }

            /// The plain integer (for logs and untyped neighbours).
            pub const fn get(self) -> i64 {
                self.0
            }

            /// The resource's 404 (see [`ResourceId::NOT_FOUND`]).
            pub fn not_found() -> ApiError {
                <Self as ResourceId>::not_found()
            }
        }

        impl ResourceId for $name {
            const NOT_FOUND: &'static str = $not_found;
        }

        /// Documented as the plain integer it is on the wire.
        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                i64::schema_name()
            }

            fn json_schema(generator: &mut SchemaGenerator) -> Schema {
                i64::json_schema(generator)
            }
        }

        impl From<i64> for $name {
            fn from(id: i64) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

resource_id!(
    /// A link's id (`urls.id`; the contract's `url_id`).
    LinkId,
    "URL not found"
);
resource_id!(
    /// A user's id (`users.id`).
    UserId,
    "User not found"
);
resource_id!(
    /// An API key's id (`api_keys.id`).
    KeyId,
    "API key not found"
);
resource_id!(
    /// A custom domain's id (`domains.id`).
    DomainId,
    "Domain not found"
);

#[cfg(test)]
mod tests {
    use super::{LinkId, UserId};

    #[test]
    fn ids_are_plain_integers_on_the_wire() {
        assert_eq!(
            serde_json::to_string(&LinkId::new(7)).ok().as_deref(),
            Some("7")
        );
        let back: UserId = serde_json::from_str("42").expect("an integer");
        assert_eq!(back, UserId::new(42));
        assert_eq!(
            LinkId::not_found().to_string(),
            "URL not found",
            "the contract's message"
        );
    }
}
