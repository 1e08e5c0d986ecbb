//! A connection's `metadata_filters`: dotted paths into the provider's asset, each with the
//! scalar it must equal. All must hold; none at all always holds.
//!
//! Semantics, chosen to surprise nobody who knows MongoDB queries:
//! - a path walks JSON objects only (`meta.external_id`); it never indexes into arrays;
//! - numbers compare by value (`1` equals `1.0`);
//! - a `null` filter holds when the value is `null` or the path is absent.
//!
//! Stored in the connection document as an array of `{path, value}` pairs rather than a
//! sub-document, because MongoDB field names with dots are awkward to query and some
//! servers refuse them.

use mongodb::bson::{doc, Bson, Document};
use serde_json::{Map, Value};

/// Most filters one connection may have.
pub const MAX_FILTERS: usize = 50;
/// Longest path, in bytes.
pub const MAX_PATH_BYTES: usize = 256;

/// One `path = value` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub path: String,
    pub value: Value,
}

/// Why a filter map is refused; `field` names the offending entry for a 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFilter {
    pub field: String,
    pub message: String,
}

/// Validates the API's `{ "dotted.path": scalar }` object.
pub fn from_json(map: &Map<String, Value>) -> Result<Vec<Filter>, BadFilter> {
    if map.len() > MAX_FILTERS {
        return Err(BadFilter {
            field: "metadata_filters".into(),
            message: format!("at most {MAX_FILTERS} filters"),
        });
    }
    let mut filters = Vec::with_capacity(map.len());
    for (path, value) in map {
        let bad = |message: &str| BadFilter {
            field: format!("metadata_filters.{path}"),
            message: message.to_owned(),
        };
        if path.is_empty() || path.chars().count() > MAX_PATH_BYTES {
            return Err(bad(&format!(
                "a path must be 1 to {MAX_PATH_BYTES} characters"
            )));
        }
        if path.split('.').any(str::is_empty) {
            return Err(bad("a path is dot-separated names, none of them empty"));
        }
        if matches!(value, Value::Array(_) | Value::Object(_)) {
            return Err(bad("must be a string, number, boolean or null"));
        }
        filters.push(Filter {
            path: path.clone(),
            value: value.clone(),
        });
    }
    Ok(filters)
}

/// The API's view: `{ "dotted.path": value }`.
pub fn to_json(filters: &[Filter]) -> Value {
    Value::Object(
        filters
            .iter()
            .map(|f| (f.path.clone(), f.value.clone()))
            .collect(),
    )
}

/// As stored: `[{path, value}, …]`.
pub fn to_bson(filters: &[Filter]) -> Bson {
    Bson::Array(
        filters
            .iter()
            .map(|f| {
                let value = mongodb::bson::to_bson(&f.value).unwrap_or(Bson::Null);
                Bson::Document(doc! {"path": &f.path, "value": value})
            })
            .collect(),
    )
}

/// Reads the stored form; also accepts a plain `{path: value}` sub-document, for
/// connections written into MongoDB by hand. Entries of any other shape are skipped, never
/// guessed at — but an unreadable filter would widen the match, so the caller is told.
pub fn from_doc(doc: &Document) -> Result<Vec<Filter>, &'static str> {
    let scalar = |b: &Bson| -> Result<Value, &'static str> {
        match b.clone().into_relaxed_extjson() {
            Value::Array(_) | Value::Object(_) => Err("a filter value must be a scalar"),
            v => Ok(v),
        }
    };
    match doc.get("metadata_filters") {
        None | Some(Bson::Null) => Ok(Vec::new()),
        Some(Bson::Array(items)) => items
            .iter()
            .map(|item| {
                let entry = item.as_document().ok_or("a filter must be {path, value}")?;
                let path = entry
                    .get_str("path")
                    .map_err(|_| "a filter's path must be a string")?;
                Ok(Filter {
                    path: path.to_owned(),
                    value: scalar(entry.get("value").unwrap_or(&Bson::Null))?,
                })
            })
            .collect(),
        Some(Bson::Document(map)) => map
            .iter()
            .map(|(path, value)| {
                Ok(Filter {
                    path: path.clone(),
                    value: scalar(value)?,
                })
            })
            .collect(),
        Some(_) => Err("metadata_filters must be an array of {path, value}"),
    }
}

/// Whether every filter holds on `asset`.
pub fn matches(filters: &[Filter], asset: &Value) -> bool {
    filters
        .iter()
        .all(|f| equal(lookup(asset, &f.path), &f.value))
}

fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(root, |value, name| value.as_object()?.get(name))
}

fn equal(found: Option<&Value>, wanted: &Value) -> bool {
    match (found, wanted) {
        (None | Some(Value::Null), Value::Null) => true,
        (Some(Value::Number(a)), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        (Some(found), wanted) => found == wanted,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filters(v: Value) -> Vec<Filter> {
        from_json(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn every_filter_must_hold_and_none_always_holds() {
        let asset = json!({"passthrough": "bkt_1", "meta": {"external_id": "x", "n": 3}});
        assert!(matches(&[], &asset));
        assert!(matches(&filters(json!({"passthrough": "bkt_1"})), &asset));
        assert!(matches(
            &filters(json!({"passthrough": "bkt_1", "meta.external_id": "x", "meta.n": 3.0})),
            &asset
        ));
        assert!(!matches(
            &filters(json!({"passthrough": "bkt_1", "meta.external_id": "y"})),
            &asset
        ));
        assert!(!matches(&filters(json!({"meta.missing": "x"})), &asset));
        assert!(!matches(
            &filters(json!({"passthrough.deeper": "x"})),
            &asset
        ));
        assert!(!matches(&filters(json!({"meta.n": "3"})), &asset));
    }

    #[test]
    fn null_holds_for_null_or_absent() {
        let asset = json!({"a": null});
        assert!(matches(&filters(json!({"a": null, "b.c": null})), &asset));
        assert!(!matches(&filters(json!({"a": null})), &json!({"a": 0})));
    }

    #[test]
    fn bad_filters_name_the_entry() {
        let bad = |v: Value| from_json(v.as_object().unwrap()).unwrap_err().field;
        assert_eq!(bad(json!({"a.b": [1]})), "metadata_filters.a.b");
        assert_eq!(bad(json!({"a": {"b": 1}})), "metadata_filters.a");
        assert_eq!(bad(json!({"a..b": 1})), "metadata_filters.a..b");
        assert_eq!(bad(json!({"": 1})), "metadata_filters.");
    }

    #[test]
    fn the_stored_form_round_trips_and_hand_written_forms_are_read() {
        let original = filters(json!({"meta.external_id": "x", "n": 2, "b": true, "z": null}));
        let stored = doc! {"metadata_filters": to_bson(&original)};
        assert_eq!(from_doc(&stored).unwrap(), original);
        assert_eq!(to_json(&original)["meta.external_id"], "x");
        let by_hand = doc! {"metadata_filters": {"passthrough": "p"}};
        assert_eq!(
            from_doc(&by_hand).unwrap(),
            vec![Filter {
                path: "passthrough".into(),
                value: json!("p")
            }]
        );
        assert!(from_doc(&doc! {"metadata_filters": [{"path": "a", "value": [1]}]}).is_err());
        assert!(from_doc(&doc! {"metadata_filters": 5}).is_err());
        assert!(from_doc(&doc! {}).unwrap().is_empty());
    }
}
