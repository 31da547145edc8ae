//! The contract's list paging, `?page=` (1-based) and `?per_page=`, and
//! keyset paging, `?after_id=`, for the event log. With none of them, a list
//! returns everything that matches its filters, so a client that filters
//! never sees a silently truncated result.
//!
//! Every list also reports how many rows match its filters, paging aside
//! ([`Listing::total`], the `X-Total-Count` header), read in the same
//! snapshot as the rows (a REPEATABLE READ transaction, [`snapshot`]), so the
//! count and the rows always agree. For an unpaged list that is one
//! `count(*)` before the cursor is declared: it costs one pass over the
//! matches, which the stream makes anyway, and no memory.
//!
//! A page that was cut short by its size reports the id after which the next
//! page starts ([`Slice::next_after_id`]); the routes turn it and the total
//! into RFC 8288 `Link` headers. Everything ([`Page::ALL`]) is not read into
//! memory: it is streamed ([`Rows::All`], see `row_stream`).

use shortline_shared::db::Db;
use sqlx::{Postgres, Transaction};

use crate::error::{ApiError, FieldErrors};
use crate::row_stream::RowStream;

/// A read-only REPEATABLE READ transaction: a list's count and rows read
/// the same snapshot.
pub async fn snapshot(db: &Db) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    db.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
}

/// Largest page served; larger `per_page` values are clamped to it.
pub const MAX_PER_PAGE: i64 = 1000;
/// Page size when only `page` is given.
pub const DEFAULT_PER_PAGE: i64 = 20;
/// Page size when `after_id` is given without `per_page`.
pub const DEFAULT_KEYSET_PER_PAGE: i64 = 100;

/// A resolved page: `limit` is `None` for "everything"; `after_id` keeps
/// only rows with a larger id (keyset paging, never combined with `offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: i64,
    pub after_id: Option<i64>,
}

impl Page {
    /// Everything, no paging.
    pub const ALL: Page = Page {
        limit: None,
        offset: 0,
        after_id: None,
    };

    /// Resolves `page` and `per_page`; 0 and negative values are a 400.
    pub fn resolve(page: Option<i64>, per_page: Option<i64>) -> Result<Page, ApiError> {
        Self::resolve_keyset(page, per_page, None)
    }

    /// Resolves `page`, `per_page` and the raw `after_id` (a non-negative
    /// integer, which cannot be combined with `page`). Every bad value is
    /// named in one 400.
    pub fn resolve_keyset(
        page: Option<i64>,
        per_page: Option<i64>,
        after_id: Option<&str>,
    ) -> Result<Page, ApiError> {
        let mut errors = FieldErrors::new();
        if page.is_some_and(|p| p < 1) {
            errors.insert(
                "page".into(),
                "must be a positive integer (pages start at 1)".into(),
            );
        }
        if per_page.is_some_and(|p| p < 1) {
            errors.insert("per_page".into(), "must be a positive integer".into());
        }
        let after_id = match after_id.map(|raw| raw.trim().parse::<i64>()) {
            None => None,
            Some(Ok(id)) if id >= 0 => Some(id),
            Some(_) => {
                errors.insert(
                    "after_id".into(),
                    "must be a non-negative integer (the last id of the previous page)".into(),
                );
                None
            }
        };
        if after_id.is_some() && page.is_some() {
            errors.insert(
                "page".into(),
                "cannot be combined with after_id (use per_page with after_id)".into(),
            );
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        if let Some(after_id) = after_id {
            return Ok(Page {
                limit: Some(
                    per_page
                        .unwrap_or(DEFAULT_KEYSET_PER_PAGE)
                        .min(MAX_PER_PAGE),
                ),
                offset: 0,
                after_id: Some(after_id),
            });
        }
        if page.is_none() && per_page.is_none() {
            return Ok(Page::ALL);
        }
        let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE).min(MAX_PER_PAGE);
        let page = page.unwrap_or(1);
        Ok(Page {
            limit: Some(per_page),
            offset: (page - 1).saturating_mul(per_page),
            after_id: None,
        })
    }

    /// `LIMIT` as SQL wants it (`NULL` = no limit).
    pub fn sql_limit(&self) -> Option<i64> {
        self.limit
    }

    /// The same page asking for one row more, so [`Page::slice`] can tell
    /// whether anything follows it.
    pub fn with_lookahead(self) -> Page {
        Page {
            limit: self.limit.map(|l| l.saturating_add(1)),
            ..self
        }
    }

    /// Cuts rows read with [`Page::with_lookahead`] back to the page size
    /// and notes where the next page starts, if there is one.
    pub fn slice<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> i64) -> Slice<T> {
        let next_after_id = match self.limit {
            Some(limit) if rows.len() as i64 > limit => {
                rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                rows.last().map(id)
            }
            _ => None,
        };
        Slice {
            items: rows,
            next_after_id,
        }
    }
}

/// What a list read: one page (at most [`MAX_PER_PAGE`] rows, in memory),
/// or every match as a stream.
pub enum Rows<T> {
    Page(Slice<T>),
    All(RowStream<T>),
}

impl Page {
    /// Whether this is every match (streamed) rather than a page.
    pub fn is_all(&self) -> bool {
        self.limit.is_none()
    }

    /// The 1-based page number of an offset page (`None` for everything
    /// and keyset pages).
    pub fn number(&self) -> Option<i64> {
        match (self.limit, self.after_id) {
            (Some(limit), None) if limit > 0 => Some(self.offset / limit + 1),
            _ => None,
        }
    }
}

/// A list's rows and how many rows match its filters, paging aside.
pub struct Listing<T> {
    pub rows: Rows<T>,
    pub total: i64,
}

impl<T> Listing<T> {
    /// A page read into memory (`next_after_id` from [`Page::slice`]).
    pub fn page(slice: Slice<T>, total: i64) -> Self {
        Self {
            rows: Rows::Page(slice),
            total,
        }
    }

    /// A page without keyset paging.
    pub fn items(items: Vec<T>, total: i64) -> Self {
        Self::page(
            Slice {
                items,
                next_after_id: None,
            },
            total,
        )
    }

    /// Every match, streamed.
    pub fn all(rows: RowStream<T>, total: i64) -> Self {
        Self {
            rows: Rows::All(rows),
            total,
        }
    }
}

/// One page of a list, and the `after_id` of the next page when the page
/// size cut the list short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice<T> {
    pub items: Vec<T>,
    pub next_after_id: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_params_means_everything() {
        assert_eq!(Page::resolve(None, None).ok(), Some(Page::ALL));
        assert_eq!(Page::resolve_keyset(None, None, None).ok(), Some(Page::ALL));
    }

    #[test]
    fn pages_are_one_based_and_clamped() {
        assert_eq!(
            Page::resolve(Some(3), Some(10)).ok(),
            Some(Page {
                limit: Some(10),
                offset: 20,
                after_id: None,
            })
        );
        assert_eq!(
            Page::resolve(None, Some(5000)).ok(),
            Some(Page {
                limit: Some(MAX_PER_PAGE),
                offset: 0,
                after_id: None,
            })
        );
        assert_eq!(
            Page::resolve(Some(2), None).ok(),
            Some(Page {
                limit: Some(DEFAULT_PER_PAGE),
                offset: 20,
                after_id: None,
            })
        );
    }

    #[test]
    fn keyset_pages() {
        assert_eq!(
            Page::resolve_keyset(None, None, Some("41")).ok(),
            Some(Page {
                limit: Some(DEFAULT_KEYSET_PER_PAGE),
                offset: 0,
                after_id: Some(41),
            })
        );
        assert_eq!(
            Page::resolve_keyset(None, Some(5000), Some("0")).ok(),
            Some(Page {
                limit: Some(MAX_PER_PAGE),
                offset: 0,
                after_id: Some(0),
            })
        );
    }

    #[test]
    fn nonsense_is_rejected() {
        assert!(Page::resolve(Some(0), None).is_err());
        assert!(Page::resolve(None, Some(-1)).is_err());
        for bad in ["-1", "x", "", "1.5", "99999999999999999999"] {
            assert!(
                Page::resolve_keyset(None, None, Some(bad)).is_err(),
                "{bad}"
            );
        }
        assert!(Page::resolve_keyset(Some(1), None, Some("3")).is_err());
    }

    #[test]
    fn slices_report_the_next_page() {
        let page = Page::resolve(None, Some(2)).expect("page");
        assert_eq!(page.with_lookahead().limit, Some(3));
        let cut = page.slice(vec![4, 7, 9], |v| *v);
        assert_eq!(cut.items, [4, 7]);
        assert_eq!(cut.next_after_id, Some(7));
        let last = page.slice(vec![4, 7], |v| *v);
        assert_eq!(last.next_after_id, None);
        let all = Page::ALL.slice(vec![1, 2, 3], |v| *v);
        assert_eq!((all.items.len(), all.next_after_id), (3, None));
    }

    #[test]
    fn page_numbers() {
        assert_eq!(
            Page::resolve(Some(3), Some(10))
                .ok()
                .and_then(|p| p.number()),
            Some(3)
        );
        assert_eq!(
            Page::resolve(None, Some(10)).ok().and_then(|p| p.number()),
            Some(1)
        );
        assert_eq!(Page::ALL.number(), None);
        let keyset = Page::resolve_keyset(None, None, Some("4")).expect("keyset");
        assert_eq!(keyset.number(), None);
    }
}
