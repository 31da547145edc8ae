//! The contract's list paging: `?page=` (1-based) and `?per_page=`. With
//! neither, a list returns everything that matches its filters, so a client
//! that filters never sees a silently truncated result.

use crate::error::{ApiError, FieldErrors};

/// Largest page served; larger `per_page` values are clamped to it.
pub const MAX_PER_PAGE: i64 = 1000;
/// Page size when only `page` is given.
pub const DEFAULT_PER_PAGE: i64 = 20;

/// A resolved page: `limit` is `None` for "everything".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: i64,
}

impl Page {
    /// Everything, no paging.
    pub const ALL: Page = Page {
        limit: None,
        offset: 0,
    };

    /// Resolves the raw parameters; 0 and negative values are a 400.
    pub fn resolve(page: Option<i64>, per_page: Option<i64>) -> Result<Page, ApiError> {
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
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        if page.is_none() && per_page.is_none() {
            return Ok(Page::ALL);
        }
        let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE).min(MAX_PER_PAGE);
        let page = page.unwrap_or(1);
        Ok(Page {
            limit: Some(per_page),
            offset: (page - 1).saturating_mul(per_page),
        })
    }

    /// `LIMIT` as SQL wants it (`NULL` = no limit).
    pub fn sql_limit(&self) -> Option<i64> {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_params_means_everything() {
        assert_eq!(Page::resolve(None, None).ok(), Some(Page::ALL));
    }

    #[test]
    fn pages_are_one_based_and_clamped() {
        assert_eq!(
            Page::resolve(Some(3), Some(10)).ok(),
            Some(Page {
                limit: Some(10),
                offset: 20
            })
        );
        assert_eq!(
            Page::resolve(None, Some(5000)).ok(),
            Some(Page {
                limit: Some(MAX_PER_PAGE),
                offset: 0
            })
        );
        assert_eq!(
            Page::resolve(Some(2), None).ok(),
            Some(Page {
                limit: Some(DEFAULT_PER_PAGE),
                offset: 20
            })
        );
    }

    #[test]
    fn nonsense_is_rejected() {
        assert!(Page::resolve(Some(0), None).is_err());
        assert!(Page::resolve(None, Some(-1)).is_err());
    }
}
