//! AWX-style pagination parameters and envelopes.

use serde::{Deserialize, Serialize};

use super::ApiError;

/// Largest `page_size` accepted.
pub const MAX_PAGE_SIZE: i64 = 200;

/// `?page=&page_size=`. Query structs repeat these two fields rather than flattening this one:
/// serde's `flatten` turns every query value into a string. Used as it is by lists that take no
/// other parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1-based page number.
    pub page: Option<i64>,
    /// Rows per page (default 25, at most 200).
    pub page_size: Option<i64>,
}

impl PageQuery {
    /// `(limit, offset, page, page_size)` after checking the values.
    pub fn resolve(&self) -> Result<(i64, i64, i64, i64), ApiError> {
        let page = self.page.unwrap_or(1);
        let size = self.page_size.unwrap_or(25);
        if page < 1 {
            return Err(ApiError::bad_request(format!(
                "page must be 1 or more, got {page}"
            )));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ApiError::bad_request(format!(
                "page_size must be between 1 and {MAX_PAGE_SIZE}, got {size}"
            )));
        }
        Ok((size, (page - 1) * size, page, size))
    }
}

/// `{count, next, previous, results}`.
#[derive(Debug, Serialize)]
pub struct Paged<T> {
    /// Total rows.
    pub count: i64,
    /// Link to the next page, if any.
    pub next: Option<String>,
    /// Link to the previous page, if any.
    pub previous: Option<String>,
    /// This page's rows.
    pub results: Vec<T>,
}

impl<T> Paged<T> {
    /// Builds the envelope for `path` (links keep `extra` query text such as filters).
    pub fn new(path: &str, extra: &str, count: i64, page: i64, size: i64, results: Vec<T>) -> Self {
        let link = |p: i64| format!("{path}?page={p}&page_size={size}{extra}");
        Paged {
            count,
            next: (page * size < count).then(|| link(page + 1)),
            previous: (page > 1).then(|| link(page - 1)),
            results,
        }
    }
}
