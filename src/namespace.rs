//! Namespaces: the tenant unit (contract §7). A webhook, a connection, an API key and an
//! audit record may belong to one `namespace_id`; events carry theirs (contract §2).
//!
//! A namespace id is chosen by the operator's platform, so herald only bounds it: 1 to
//! [`MAX_LEN`] characters of ASCII letters, digits and `_ - . :` — enough for the ids
//! platforms mint (`ns_01HV…`, `tenant-42`, `org:acme`), and nothing that needs escaping in
//! a URL, a log line or a MongoDB filter. Absent means "no namespace": for a webhook, the
//! operator's, which receives every event; for a key, every namespace.

use mongodb::bson::{Bson, Document};

/// Longest namespace id accepted, in characters (all ASCII, so in bytes too).
pub const MAX_LEN: usize = 64;

/// Why a namespace id is refused; the message names neither the field nor the value (the
/// caller names the field, and the value may be anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadNamespace {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_LEN} characters")]
    TooLong,
    #[error("may contain only ASCII letters, digits and _ - . :")]
    Characters,
}

/// Checks a namespace id.
pub fn validate(id: &str) -> Result<(), BadNamespace> {
    if id.is_empty() {
        return Err(BadNamespace::Empty);
    }
    if id.len() > MAX_LEN {
        return Err(BadNamespace::TooLong);
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return Err(BadNamespace::Characters);
    }
    Ok(())
}

/// The `namespace_id` of a stored document: `Ok(None)` when absent or `null` (documents
/// written before namespaces existed have none), an error when it is not a valid id.
pub fn of_document(doc: &Document) -> Result<Option<String>, BadNamespace> {
    match doc.get("namespace_id") {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => validate(s).map(|()| Some(s.clone())),
        Some(_) => Err(BadNamespace::Characters),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn platform_ids_pass_and_odd_or_huge_ones_do_not() {
        for ok in [
            "ns_a",
            "tenant-42",
            "org:acme",
            "A.b_c-9",
            &"x".repeat(MAX_LEN),
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate(""), Err(BadNamespace::Empty));
        assert_eq!(
            validate(&"x".repeat(MAX_LEN + 1)),
            Err(BadNamespace::TooLong)
        );
        for bad in [
            "a b",
            "a/b",
            "a$b",
            "ns\u{e9}",
            "a\nb",
            "{\"$ne\":1}",
            "a?b",
        ] {
            assert_eq!(validate(bad), Err(BadNamespace::Characters), "{bad:?}");
        }
    }

    #[test]
    fn documents_without_a_namespace_have_none() {
        assert_eq!(of_document(&doc! {}), Ok(None));
        assert_eq!(of_document(&doc! {"namespace_id": null}), Ok(None));
        assert_eq!(
            of_document(&doc! {"namespace_id": "ns_a"}),
            Ok(Some("ns_a".into()))
        );
        assert!(of_document(&doc! {"namespace_id": 5}).is_err());
    }
}
