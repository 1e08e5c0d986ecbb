//! One page of a list, the way every list route pages: sorted by `_id`, at most `limit`
//! documents after an opaque cursor, plus the cursor of the next page when there is one.
//!
//! The cursor is the last `_id` of a page, base64url-encoded ([`cursor`]). Pages are sorted
//! by `_id`, so documents inserted meanwhile never shift what the next page holds. A route
//! reads its [`PageRequest`] from the query ([`PageRequest::from_query`], with the route's
//! [`PageLimits`]), runs [`find_page`] with its own filter, and renders the [`Page`]
//! as `{"results": [..], "next_cursor": "…" | null}` ([`Page::to_json`]).

use std::collections::HashMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;
use serde_json::{json, Value};

use super::id_string;

/// Why a page cannot be read from a query; every variant is a 400 naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("query parameter limit: invalid value {0:?}")]
    LimitNotANumber(String),
    #[error("query parameter limit: {value} is out of range 1..={max}")]
    LimitOutOfRange { value: i64, max: i64 },
    #[error("query parameter cursor: not a cursor returned by this API")]
    BadCursor,
}

/// A route's page sizes, and how it reads an empty `cursor=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// `limit` when the query has none.
    pub default: i64,
    /// Largest `limit` accepted.
    pub max: i64,
    /// `cursor=` (empty) reads as the first page rather than a 400.
    pub empty_cursor_is_first_page: bool,
}

/// What a list request asks for: at most `limit` documents whose `_id` is after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    /// The last `_id` of the previous page (the decoded cursor); `None` for the first page.
    pub after: Option<String>,
}

impl PageRequest {
    /// The first page of `limit` documents.
    pub fn first(limit: i64) -> Self {
        Self { limit, after: None }
    }

    /// Reads `limit` and `cursor` from query parameters.
    pub fn from_query(
        query: &HashMap<String, String>,
        limits: PageLimits,
    ) -> Result<Self, PageError> {
        let limit = parse_limit(query.get("limit").map(String::as_str), limits)?;
        let after = match query.get("cursor").map(String::as_str) {
            None => None,
            Some("") if limits.empty_cursor_is_first_page => None,
            Some(raw) => Some(cursor::decode(raw)?),
        };
        Ok(Self { limit, after })
    }

    /// The request for the page that follows `page`, if there is one.
    pub fn next<T>(&self, page: &Page<T>) -> Option<Self> {
        page.last_id
            .clone()
            .filter(|_| page.next_cursor.is_some())
            .map(|after| Self {
                limit: self.limit,
                after: Some(after),
            })
    }
}

/// `limit` as sent (`None`: absent), checked against `limits`.
pub fn parse_limit(raw: Option<&str>, limits: PageLimits) -> Result<i64, PageError> {
    let Some(raw) = raw else {
        return Ok(limits.default);
    };
    let value = raw
        .parse::<i64>()
        .map_err(|_| PageError::LimitNotANumber(raw.to_owned()))?;
    if (1..=limits.max).contains(&value) {
        Ok(value)
    } else {
        Err(PageError::LimitOutOfRange {
            value,
            max: limits.max,
        })
    }
}

/// One page of items, with the cursor of the next page when more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
    /// The last `_id` of this page, decoded (what `next_cursor` encodes).
    last_id: Option<String>,
}

impl<T> Page<T> {
    /// The page's items turned into something else (documents into views, say).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
            last_id: self.last_id,
        }
    }

    /// The list responses' shape: `{"results": [..], "next_cursor": "…" | null}`.
    pub fn to_json(&self, view: impl FnMut(&T) -> Value) -> Value {
        let results: Vec<Value> = self.items.iter().map(view).collect();
        json!({"results": results, "next_cursor": self.next_cursor})
    }
}

/// One page of `collection`: the documents matching `filter` whose `_id` is after the
/// request's cursor, in `_id` order, with `projection` if given. An `_id` condition already
/// in `filter` must be an operator document (`{"$gte": …}`); the cursor joins it.
pub async fn find_page(
    collection: &Collection<Document>,
    mut filter: Document,
    projection: Option<Document>,
    request: &PageRequest,
) -> mongodb::error::Result<Page<Document>> {
    if let Some(after) = &request.after {
        match filter.get_mut("_id") {
            Some(Bson::Document(range)) => {
                range.insert("$gt", after.as_str());
            }
            Some(exact) => {
                let exact = exact.clone();
                filter.remove("_id");
                let and = vec![
                    Bson::Document(doc! {"_id": exact}),
                    Bson::Document(doc! {"_id": {"$gt": after.as_str()}}),
                ];
                filter.insert("$and", and);
            }
            None => {
                filter.insert("_id", doc! {"$gt": after.as_str()});
            }
        }
    }
    // One more than a page tells whether another page follows.
    let mut find = collection
        .find(filter)
        .sort(doc! {"_id": 1})
        .limit(request.limit + 1);
    if let Some(projection) = projection {
        find = find.projection(projection);
    }
    let found: Vec<Document> = find.await?.try_collect().await?;
    Ok(page_of(found, request.limit))
}

/// The first `limit` of `found` (read with one extra), and the next cursor if the extra
/// one was there.
fn page_of(mut found: Vec<Document>, limit: i64) -> Page<Document> {
    let more = found.len() as i64 > limit;
    found.truncate(limit.max(0) as usize);
    let last_id = found.last().map(|d| id_string(d.get("_id")));
    let next_cursor = last_id.as_deref().filter(|_| more).map(cursor::encode);
    Page {
        items: found,
        next_cursor,
        last_id,
    }
}

/// Opaque pagination cursors: the last `_id` of a page, base64url-encoded.
pub mod cursor {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::PageError;

    pub fn encode(last_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(last_id.as_bytes())
    }

    /// Reads a cursor back. Every string of the document's cursor pattern
    /// (`^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$`, unpadded base64url) is accepted:
    /// a cursor is only a position in `_id` order, so one this API did not make is a
    /// page from somewhere, never an error (unused trailing bits and bytes that are not
    /// UTF-8 are tolerated).
    pub fn decode(cursor: &str) -> Result<String, PageError> {
        LENIENT
            .decode(cursor)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .filter(|s| !s.is_empty())
            .ok_or(PageError::BadCursor)
    }

    /// Unpadded base64url that tolerates non-zero trailing bits.
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PageLimits = PageLimits {
        default: 50,
        max: 500,
        empty_cursor_is_first_page: false,
    };

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn cursors_round_trip_and_refuse_what_they_did_not_make() {
        let id = "evt_1:wh_0123456789abcdef";
        assert_eq!(cursor::decode(&cursor::encode(id)).unwrap(), id);
        // Whatever matches the documented pattern is some position.
        for odd in ["_w", "ab", "-Inf", "AAAA"] {
            assert!(cursor::decode(odd).is_ok(), "{odd}");
        }
        for bad in ["!!!", "", "not-a-cursor!", "_", "abcde"] {
            assert_eq!(cursor::decode(bad), Err(PageError::BadCursor), "{bad}");
        }
    }

    #[test]
    fn a_request_reads_limit_and_cursor_with_the_routes_limits() {
        assert_eq!(
            PageRequest::from_query(&query(&[]), LIMITS).unwrap(),
            PageRequest::first(50)
        );
        let after = cursor::encode("wh_1");
        assert_eq!(
            PageRequest::from_query(&query(&[("limit", "2"), ("cursor", &after)]), LIMITS).unwrap(),
            PageRequest {
                limit: 2,
                after: Some("wh_1".into())
            }
        );
        for (raw, error) in [
            ("0", "query parameter limit: 0 is out of range 1..=500"),
            ("501", "query parameter limit: 501 is out of range 1..=500"),
            ("-1", "query parameter limit: -1 is out of range 1..=500"),
            ("ten", "query parameter limit: invalid value \"ten\""),
        ] {
            let e = PageRequest::from_query(&query(&[("limit", raw)]), LIMITS).unwrap_err();
            assert_eq!(e.to_string(), error);
        }
        // An empty cursor: a 400, or the first page where the route says so.
        let empty = query(&[("cursor", "")]);
        assert_eq!(
            PageRequest::from_query(&empty, LIMITS),
            Err(PageError::BadCursor)
        );
        let lenient = PageLimits {
            empty_cursor_is_first_page: true,
            ..LIMITS
        };
        assert_eq!(
            PageRequest::from_query(&empty, lenient).unwrap(),
            PageRequest::first(50)
        );
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_more_follow() {
        let docs = |n: usize| -> Vec<Document> {
            (1..=n).map(|i| doc! {"_id": format!("id_{i}")}).collect()
        };
        let full = page_of(docs(3), 2);
        assert_eq!(full.items.len(), 2);
        assert_eq!(full.next_cursor, Some(cursor::encode("id_2")));
        let request = PageRequest::first(2);
        assert_eq!(
            request.next(&full),
            Some(PageRequest {
                limit: 2,
                after: Some("id_2".into())
            })
        );
        let last = page_of(docs(2), 2);
        assert_eq!(last.next_cursor, None);
        assert_eq!(request.next(&last), None);
        assert_eq!(
            last.to_json(|d| json!(d.get_str("_id").unwrap())),
            json!({"results": ["id_1", "id_2"], "next_cursor": null})
        );
        let empty = page_of(Vec::new(), 2);
        assert_eq!(
            empty.map(|d| d).to_json(|_| json!(1)),
            json!({"results": [], "next_cursor": null})
        );
    }
}
