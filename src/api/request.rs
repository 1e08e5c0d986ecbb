//! A request, fully read: headers, query parameters and the raw body (bounded).

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::store::page::{PageLimits, PageRequest};

pub struct ApiRequest {
    pub parts: Parts,
    /// Query parameters; a repeated one keeps its last value.
    pub query: HashMap<String, String>,
    /// The raw body bytes, as received (inbound signatures are verified over these).
    pub body: Bytes,
}

impl ApiRequest {
    /// Refuses a query parameter outside `allowed` (400 naming it and listing them).
    pub fn only_query_params(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self
            .query
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .min()
        {
            Some(unknown) => Err(ApiError::bad_request(format!(
                "unknown query parameter {unknown:?}; filters are {}",
                allowed.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// Reads the body, refusing more than `limit` bytes with 413.
    pub async fn read(parts: Parts, body: Incoming, limit: usize) -> Result<Self, ApiError> {
        if let Some(length) = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if length > limit {
                return Err(too_large(limit));
            }
        }
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large(limit)),
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "could not read the body: {e}"
                )))
            }
        };
        let query = parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self { parts, query, body })
    }

    /// The body as JSON of type `T`; errors name the offending field (unknown fields too,
    /// where `T` denies them).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        json_object(&self.body)
    }

    /// A query parameter parsed as `T`, or a 400 naming it.
    pub fn query_param<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.query.get(name) {
            None => Ok(None),
            Some(raw) => raw.parse::<T>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("query parameter {name}: invalid value {raw:?}"))
            }),
        }
    }

    /// The page a list route is asked for (`limit`, `cursor`), within the route's `limits`.
    pub fn page(&self, limits: PageLimits) -> Result<PageRequest, ApiError> {
        Ok(PageRequest::from_query(&self.query, limits)?)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `body` as JSON of type `T`, which must be a JSON object ([`ApiRequest::json`]; also each
/// event of a batch).
pub fn json_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    // serde would also read a derived struct from an array of its fields in order;
    // every route takes an object, so anything else is refused up front.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => Err(ApiError::invalid_field("body", "must be a JSON object")),
            Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
        };
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("malformed JSON: {inner}"))
        } else if path == "." {
            ApiError::invalid_field("body", without_quoted_strings(&inner.to_string()))
        } else {
            ApiError::invalid_field(&path, without_quoted_strings(&inner.to_string()))
        }
    })
}

/// A path segment, percent-decoded (clients escape ids such as `evt_1:wh_2`); an escape
/// that is not one stays as written, and a result that is not UTF-8 is a 400.
pub fn path_id(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("the id in the path is not UTF-8"))
}

/// serde quotes the offending string in type errors (`invalid type: string "…", expected
/// a map`). That string may be a credential sent in the wrong field, and error messages end
/// up in client and CI logs, so it is left out: `invalid type: a string, expected a map`.
fn without_quoted_strings(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        // serde writes the string with `{:?}`: an inner `"` is escaped, so the first
        // unescaped `"` ends it.
        let after = &rest[start + "string \"".len()..];
        let mut escaped = false;
        let Some(end) = after.find(|c| {
            let ends = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            ends
        }) else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str("a string");
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body exceeds {limit} bytes"),
    )
}

/// Opaque pagination cursors ([`crate::store::page::cursor`]), a bad one as a 400.
pub mod cursor {
    use crate::api::ApiError;

    pub fn decode(cursor: &str) -> Result<String, ApiError> {
        Ok(crate::store::page::cursor::decode(cursor)?)
    }
}

#[cfg(test)]
mod tests {
    use super::{path_id, without_quoted_strings};

    #[test]
    fn type_errors_do_not_repeat_the_string_sent() {
        let error = serde_json::from_str::<std::collections::BTreeMap<String, bool>>(
            r#"{"a": "whsec_s3cret \", expected x"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("whsec_s3cret"), "{error}");
        let shown = without_quoted_strings(&error);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.starts_with("invalid type: a string, expected a boolean"),
            "{shown}"
        );
        assert_eq!(
            without_quoted_strings("invalid type: integer `5`, expected a string"),
            "invalid type: integer `5`, expected a string"
        );
    }

    #[test]
    fn path_ids_are_percent_decoded() {
        assert_eq!(
            path_id("wh_0123456789abcdef").unwrap(),
            "wh_0123456789abcdef"
        );
        assert_eq!(path_id("evt_1%3Awh_2").unwrap(), "evt_1:wh_2");
        assert_eq!(path_id("hand%20made%2Fid").unwrap(), "hand made/id");
        assert_eq!(path_id("100%").unwrap(), "100%");
        assert_eq!(path_id("%zz%4").unwrap(), "%zz%4");
        assert_eq!(path_id("%FF").unwrap_err().status, 400);
    }
}
