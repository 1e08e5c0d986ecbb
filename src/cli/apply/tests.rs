//! The apply file, the planner and the plan as shown.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::*;

fn desired(name: &str) -> Desired {
    Desired {
        name: name.into(),
        url: format!("https://hooks.example.com/{name}"),
        event_types: vec!["object.created".into(), "object.deleted".into()],
        headers: BTreeMap::from([("X-Mixpeek-Secret".into(), "s3cret".into())]),
        rate_limit_per_second: Some(20),
        enabled: None,
    }
}

/// The webhook as the API would show it after creating `desired`, values redacted.
fn current(id: &str, d: &Desired) -> Current {
    Current {
        id: id.into(),
        name: Some(d.name.clone()),
        url: d.url.clone(),
        event_types: d.event_types.clone(),
        headers: d
            .headers
            .keys()
            .map(|k| (k.clone(), "***".to_owned()))
            .collect(),
        enabled: d.enabled(),
        rate_limit_per_second: d.rate_limit_per_second.map(u64::from),
    }
}

fn updates(plan: &Plan) -> Vec<(&str, Vec<&'static str>, &Value)> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Update {
                name, diffs, patch, ..
            } => Some((
                name.as_str(),
                diffs.iter().map(|d| d.field).collect(),
                patch,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn missing_webhooks_are_created_in_file_order() {
    let plan = plan(&[], &[desired("a"), desired("b")], Options::default()).unwrap();
    assert_eq!(
        plan.steps,
        vec![
            Step::Create {
                desired: desired("a")
            },
            Step::Create {
                desired: desired("b")
            }
        ]
    );
    let body = desired("a").create_body();
    assert_eq!(body["name"], "a");
    assert_eq!(body["enabled"], true);
    assert_eq!(body["rate_limit_per_second"], 20);
    assert_eq!(body["headers"]["X-Mixpeek-Secret"], "s3cret");
}

#[test]
fn a_second_apply_plans_nothing() {
    let want = vec![desired("a"), desired("b")];
    let have = vec![current("wh_a", &want[0]), current("wh_b", &want[1])];
    let plan = plan(&have, &want, Options::default()).unwrap();
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.unchanged, vec!["a", "b"]);
    assert_eq!(
        render_plan(&plan, "w.toml"),
        "No changes: 2 webhook(s) already match w.toml."
    );
}

#[test]
fn only_differing_fields_are_patched() {
    let mut want = desired("a");
    let have = current("wh_a", &want);
    want.url = "https://other.example.com/a".into();
    want.rate_limit_per_second = None;
    let plan = plan(&[have], &[want], Options::default()).unwrap();
    let ups = updates(&plan);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].1, vec!["url", "rate_limit_per_second"]);
    assert_eq!(
        ups[0].2,
        &json!({"url": "https://other.example.com/a", "rate_limit_per_second": null})
    );
}

#[test]
fn event_types_compare_as_a_set_and_urls_as_parsed() {
    let want = desired("a");
    let mut have = current("wh_a", &want);
    have.event_types.reverse();
    have.url = format!("{}", url::Url::parse(&want.url).unwrap());
    assert!(plan(
        std::slice::from_ref(&have),
        std::slice::from_ref(&want),
        Options::default()
    )
    .unwrap()
    .is_empty());
    have.event_types.pop();
    let plan = plan(&[have], &[want], Options::default()).unwrap();
    assert_eq!(updates(&plan)[0].1, vec!["event_types"]);
    assert_eq!(
        updates(&plan)[0].2["event_types"],
        json!(["object.created", "object.deleted"])
    );
}

#[test]
fn enabled_defaults_to_true() {
    let want = desired("a");
    let mut have = current("wh_a", &want);
    have.enabled = false;
    let plan = plan(&[have], &[want], Options::default()).unwrap();
    assert_eq!(updates(&plan)[0].2, &json!({"enabled": true}));
}

#[test]
fn redacted_header_values_count_as_equal_unless_forced() {
    let want = desired("a");
    let have = current("wh_a", &want);
    assert!(plan(
        std::slice::from_ref(&have),
        std::slice::from_ref(&want),
        Options::default()
    )
    .unwrap()
    .is_empty());
    let forced = Options {
        force_headers: true,
        ..Options::default()
    };
    let plan = plan(&[have], &[want], forced).unwrap();
    assert_eq!(
        updates(&plan)[0].2,
        &json!({"headers": {"X-Mixpeek-Secret": "s3cret"}})
    );
}

#[test]
fn readable_header_values_are_compared_and_never_shown() {
    let want = desired("a");
    let mut have = current("wh_a", &want);
    have.headers
        .insert("X-Mixpeek-Secret".into(), "s3cret".into());
    assert!(plan(
        std::slice::from_ref(&have),
        std::slice::from_ref(&want),
        Options::default()
    )
    .unwrap()
    .is_empty());
    // Even --force-headers has nothing to re-send when every value matches.
    let forced = Options {
        force_headers: true,
        ..Options::default()
    };
    assert!(plan(
        std::slice::from_ref(&have),
        std::slice::from_ref(&want),
        forced
    )
    .unwrap()
    .is_empty());
    have.headers.insert("X-Mixpeek-Secret".into(), "old".into());
    let plan = plan(&[have], &[want], Options::default()).unwrap();
    let text = render_plan(&plan, "w.toml");
    assert!(text.contains("value changed: X-Mixpeek-Secret"), "{text}");
    assert!(!text.contains("s3cret") && !text.contains("old"), "{text}");
}

#[test]
fn header_names_compare_without_case_and_renames_patch_the_whole_map() {
    let want = desired("a");
    let mut have = current("wh_a", &want);
    have.headers = BTreeMap::from([("x-mixpeek-secret".into(), "***".into())]);
    assert!(plan(
        std::slice::from_ref(&have),
        std::slice::from_ref(&want),
        Options::default()
    )
    .unwrap()
    .is_empty());
    have.headers = BTreeMap::from([("X-Other".into(), "***".into())]);
    let plan = plan(&[have], &[want], Options::default()).unwrap();
    assert_eq!(
        updates(&plan)[0].2,
        &json!({"headers": {"X-Mixpeek-Secret": "s3cret"}})
    );
}

#[test]
fn removing_headers_from_the_file_clears_them() {
    let mut want = desired("a");
    let have = current("wh_a", &want);
    want.headers.clear();
    let plan = plan(&[have], &[want], Options::default()).unwrap();
    assert_eq!(updates(&plan)[0].2, &json!({"headers": {}}));
}

#[test]
fn prune_deletes_only_named_webhooks_absent_from_the_file() {
    let want = vec![desired("a")];
    let mut unnamed = current("wh_x", &desired("x"));
    unnamed.name = None;
    let have = vec![
        current("wh_a", &want[0]),
        current("wh_old", &desired("old")),
        unnamed,
    ];
    let kept = plan(&have, &want, Options::default()).unwrap();
    assert!(kept.is_empty());
    assert_eq!(kept.kept, vec!["old"]);
    let pruned = plan(
        &have,
        &want,
        Options {
            prune: true,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(
        pruned.steps,
        vec![Step::Delete {
            id: "wh_old".into(),
            name: "old".into()
        }]
    );
    assert_eq!(pruned.unnamed, 1);
}

#[test]
fn an_ambiguous_name_is_refused() {
    let want = vec![desired("a")];
    let have = vec![current("wh_1", &want[0]), current("wh_2", &want[0])];
    let error = plan(&have, &want, Options::default()).unwrap_err();
    assert!(error.contains("wh_1, wh_2"), "{error}");
    // A duplicated name the file does not use is no obstacle.
    assert!(plan(&have, &[desired("b")], Options::default()).is_ok());
}

#[test]
fn the_plan_shows_field_diffs() {
    let mut want = desired("a");
    let have = current("wh_a", &want);
    want.rate_limit_per_second = Some(50);
    let plan = plan(&[have], &[want, desired("new")], Options::default()).unwrap();
    let text = render_plan(&plan, "w.toml");
    assert!(text.contains("~ update a (wh_a)"), "{text}");
    assert!(text.contains("rate_limit_per_second: 20 → 50"), "{text}");
    assert!(text.contains("+ create new"), "{text}");
    assert!(
        text.ends_with("Plan: 1 to create, 1 to update, 0 to delete, 0 unchanged."),
        "{text}"
    );
}

#[test]
fn the_file_format_of_the_contract_parses() {
    let text = r#"
[[webhooks]]
name = "search-cache"
url = "https://hooks.example.com/herald"
event_types = ["collection.documents.written", "object.created"]
headers = { X-Mixpeek-Secret = "abc" }
rate_limit_per_second = 20
enabled = true

[[webhooks]]
name = "minimal"
url = "https://hooks.example.com/minimal"
event_types = ["*"]
"#;
    let parsed = parse(text).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0].headers["X-Mixpeek-Secret"], "abc");
    assert_eq!(parsed[1].rate_limit_per_second, None);
    assert_eq!(parse("").unwrap(), vec![]);
}

#[test]
fn bad_files_get_one_line_errors() {
    let entry = |extra: &str| {
        format!("[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n{extra}")
    };
    let cases = [
        (entry("urll = \"x\""), "unknown field `urll`"),
        (
            "[[webhooks]]\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n".to_owned(),
            "missing field `name`",
        ),
        (
            "[[webhooks]]\nname = \"a\"\nevent_types = [\"*\"]\n".to_owned(),
            "missing field `url`",
        ),
        (
            format!("{}{}", entry(""), entry("")),
            "already used by webhooks[0]",
        ),
        (entry("rate_limit_per_second = 0"), "rate_limit_per_second"),
        // The API's range: a file the API would refuse fails before anything is sent.
        (
            entry("rate_limit_per_second = 20000"),
            "rate_limit_per_second: 20000 is out of range 1..=10000",
        ),
        (
            entry("headers = { Content-Type = \"text/plain\" }"),
            "headers.Content-Type: herald sets this header itself",
        ),
        (entry("rate_limit_per_second = -1"), "line 5"),
        (
            entry("headers = { \"bad name\" = \"v\" }"),
            "legal HTTP header name",
        ),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"http://h.example.com\"\nevent_types = [\"*\"]\n"
                .to_owned(),
            "HTTPS is required",
        ),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = []\n"
                .to_owned(),
            "event_types",
        ),
        (
            "[[webhooks]]\nname = \"\"\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n"
                .to_owned(),
            "name: may not be empty",
        ),
        ("webhooks = [\n".to_owned(), "line"),
        (
            "[[webhook]]\nname = \"a\"\n".to_owned(),
            "unknown field `webhook`",
        ),
    ];
    for (text, expected) in cases {
        let error = parse(&text).unwrap_err();
        assert!(error.contains(expected), "{text:?}: {error}");
        assert!(!error.contains('\n'), "{error}");
    }
}

#[test]
fn event_types_are_checked_against_the_catalog_first() {
    let catalog: BTreeSet<String> = ["object.created".to_owned()].into();
    let mut w = desired("a");
    w.event_types = vec!["object.created".into()];
    assert!(check_event_types(std::slice::from_ref(&w), &catalog).is_ok());
    w.event_types = vec!["*".into()];
    assert!(check_event_types(std::slice::from_ref(&w), &catalog).is_ok());
    w.event_types = vec!["*".into(), "object.created".into()];
    assert!(check_event_types(std::slice::from_ref(&w), &catalog).is_err());
    w.event_types = vec!["object.craeted".into()];
    let error = check_event_types(&[w], &catalog).unwrap_err();
    assert!(error.contains("\"object.craeted\""), "{error}");
}

#[test]
fn current_webhooks_read_from_api_json() {
    let value = json!({
        "webhook_id": "wh_0123456789abcdef", "name": "a", "url": "https://h.example.com/",
        "event_types": ["*"], "headers": {"X-A": "***"}, "enabled": false,
        "rate_limit_per_second": 5, "created_at": "2025-01-01T00:00:00Z"
    });
    let current = Current::from_json(&value).unwrap();
    assert_eq!(current.id, "wh_0123456789abcdef");
    assert_eq!(current.name.as_deref(), Some("a"));
    assert!(!current.enabled);
    assert_eq!(current.rate_limit_per_second, Some(5));
    let bare = Current::from_json(&json!({"id": "wh_1", "url": "https://x"})).unwrap();
    assert!(bare.enabled && bare.headers.is_empty() && bare.name.is_none());
    assert!(Current::from_json(&json!({"url": "https://x"})).is_err());
}
