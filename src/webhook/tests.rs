//! The rules of the webhook model, one source at a time.

use herald_actors::signing::generate_secret;

use super::limits::{MAX_HEADERS, MAX_NAME_CHARS};
use super::*;

fn catalog_of(types: &'static [&'static str]) -> impl Fn(&str) -> bool {
    move |t| types.contains(&t)
}

/// The first error of validating `fields` as a client with the catalog `object.created`.
fn client(fields: WebhookFields) -> Result<WebhookFields, FieldError> {
    let contains = catalog_of(&["object.created", "object.deleted"]);
    let rules = Rules {
        origin: Origin::Client,
        catalog: Some(Catalog {
            contains: &contains,
            called: "the event catalog (GET /v1/webhooks/events)",
        }),
    };
    let mut fields = fields;
    validate(&mut fields, &rules).map_err(|errors| errors[0].clone())?;
    Ok(fields)
}

fn stored(fields: WebhookFields) -> Result<WebhookFields, FieldError> {
    let rules = Rules {
        origin: Origin::Stored,
        catalog: None,
    };
    let mut fields = fields;
    validate(&mut fields, &rules).map_err(|errors| errors[0].clone())?;
    Ok(fields)
}

fn url(url: &str) -> WebhookFields {
    WebhookFields {
        url: Some(url.into()),
        ..WebhookFields::default()
    }
}

fn types(types: &[&str]) -> WebhookFields {
    WebhookFields {
        event_types: Some(types.iter().map(|s| s.to_string()).collect()),
        ..WebhookFields::default()
    }
}

fn headers(pairs: &[(&str, &str)]) -> WebhookFields {
    WebhookFields {
        headers: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..WebhookFields::default()
    }
}

#[test]
fn ids_are_wh_and_16_lowercase_hex() {
    let id = new_id();
    assert_eq!(id.len(), 19);
    assert!(id.starts_with("wh_"));
    assert!(id[3..]
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    assert_ne!(new_id(), new_id());
}

#[test]
fn client_urls_must_be_absolute_https_with_a_host() {
    let normalized = |raw: &str| client(url(raw)).unwrap().url.unwrap();
    assert_eq!(
        normalized("https://hooks.example.com/h?x=1"),
        "https://hooks.example.com/h?x=1"
    );
    let error = client(url("http://hooks.example.com/h")).unwrap_err();
    assert_eq!(error.path, "url");
    assert!(error.message.contains("HTTPS"), "{error}");
    for bad in [
        "hooks.example.com/h",
        "/relative",
        "ftp://x.example/",
        "https://",
        "",
    ] {
        assert_eq!(client(url(bad)).unwrap_err().path, "url", "{bad}");
    }
    assert_eq!(
        normalized("https://x.example/h#section"),
        "https://x.example/h"
    );
    assert!(client(url("https://user:pw@x.example/h")).is_ok());
    // Normalized into something hyper parses.
    assert_eq!(
        normalized("https://x.example/a b"),
        "https://x.example/a%20b"
    );
}

#[test]
fn stored_urls_need_only_parse_and_are_kept_as_written() {
    // The transport refuses plaintext on every attempt, and says so in the delivery.
    assert_eq!(
        stored(url("http://a.example/h")).unwrap().url.unwrap(),
        "http://a.example/h"
    );
    assert_eq!(stored(url("not a url")).unwrap_err().path, "url");
    let long = format!("https://a.example/{}", "x".repeat(4096));
    assert!(client(url(&long)).is_err() && stored(url(&long)).is_err());
}

#[test]
fn event_types_are_catalog_types_or_exactly_star() {
    let accepted = |t: &[&str]| client(types(t)).unwrap().event_types.unwrap();
    assert_eq!(
        accepted(&["object.created", "object.created"]),
        ["object.created"]
    );
    assert_eq!(accepted(&["*"]), ["*"]);
    assert_eq!(client(types(&[])).unwrap_err().path, "event_types");
    assert_eq!(
        client(types(&["object.created", "nope"])).unwrap_err().path,
        "event_types[1]"
    );
    assert!(client(types(&["*", "object.created"])).is_err());
    // Without a catalog only the shape is judged; stored types are not the catalog's.
    let shape_only = |t: &[&str]| {
        let mut fields = types(t);
        validate(
            &mut fields,
            &Rules {
                origin: Origin::Client,
                catalog: None,
            },
        )
    };
    assert!(shape_only(&["anything.at.all"]).is_ok());
    assert!(shape_only(&[" "]).is_err());
    assert!(stored(types(&["anything", "*"])).is_ok());
    assert!(stored(types(&[])).is_err());
}

#[test]
fn client_headers_must_be_legal_and_not_herald_s_own() {
    assert!(client(headers(&[("X-Mixpeek-Secret", "s3cret")])).is_ok());
    for (pairs, path) in [
        (&[("bad header", "v")][..], "headers.bad header"),
        (&[("X-Ok", "line\nbreak")][..], "headers.X-Ok"),
        (&[("X-Ok", "caf\u{e9}")][..], "headers.X-Ok"),
        (&[("X-Ok", "\u{84}")][..], "headers.X-Ok"),
        (
            &[("Webhook-Signature", "v1,forged")][..],
            "headers.Webhook-Signature",
        ),
        (
            &[("Content-Type", "text/plain")][..],
            "headers.Content-Type",
        ),
        (&[("X-A", "1"), ("x-a", "2")][..], "headers.x-a"),
        (&[("$where", "v")][..], "headers.$where"),
        (&[("X.Dotted", "v")][..], "headers.X.Dotted"),
        (&[("X-Sealed", "enc:v1:abc")][..], "headers.X-Sealed"),
    ] {
        assert_eq!(client(headers(pairs)).unwrap_err().path, path);
    }
    let many: Vec<(String, String)> = (0..=MAX_HEADERS)
        .map(|i| (format!("X-{i}"), "v".into()))
        .collect();
    let too_many = WebhookFields {
        headers: Some(many),
        ..WebhookFields::default()
    };
    assert_eq!(client(too_many.clone()).unwrap_err().path, "headers");
    assert_eq!(stored(too_many).unwrap_err().path, "headers");
}

#[test]
fn stored_headers_are_judged_on_legality_and_limits_only() {
    // The transport drops herald's own headers from a hand-written document.
    assert!(stored(headers(&[("Content-Type", "text/plain")])).is_ok());
    assert_eq!(
        stored(headers(&[("bad header", "v")])).unwrap_err().path,
        "headers.bad header"
    );
    let long = "v".repeat(8193);
    assert!(stored(headers(&[("X-Long", &long)])).is_err());
}

#[test]
fn names_secrets_and_rate_limits_are_checked() {
    let name = |n: String| {
        client(WebhookFields {
            name: Some(n),
            ..WebhookFields::default()
        })
    };
    assert!(name("search-cache".into()).is_ok());
    assert!(name(" ".into()).is_err());
    assert!(name("x".repeat(MAX_NAME_CHARS + 1)).is_err());
    assert!(name("é".repeat(MAX_NAME_CHARS)).is_ok());
    assert!(name("a\u{7}b".into()).is_err());
    let secret = |s: String| {
        client(WebhookFields {
            secret: Some(s),
            ..WebhookFields::default()
        })
    };
    assert!(secret(generate_secret()).is_ok());
    assert_eq!(secret("hunter2".into()).unwrap_err().path, "secret");
    let rate = |n: i64| WebhookFields {
        rate_limit_per_second: Some(n),
        ..WebhookFields::default()
    };
    for ok in [1, 10_000] {
        assert!(client(rate(ok)).is_ok() && stored(rate(ok)).is_ok(), "{ok}");
    }
    // One range wherever the webhook comes from.
    for bad in [0, -1, 10_001, 20_000, i64::MAX] {
        let error = client(rate(bad)).unwrap_err();
        assert_eq!(error.path, "rate_limit_per_second");
        assert_eq!(stored(rate(bad)).unwrap_err(), error, "{bad}");
    }
}

#[test]
fn every_bad_field_is_named_in_field_order() {
    let mut fields = WebhookFields {
        url: Some("http://a.example".into()),
        event_types: Some(vec![]),
        name: Some(String::new()),
        headers: Some(vec![("bad header".into(), "v".into())]),
        secret: Some("nope".into()),
        rate_limit_per_second: Some(0),
    };
    let errors = validate(
        &mut fields,
        &Rules {
            origin: Origin::Client,
            catalog: None,
        },
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "url",
            "event_types",
            "name",
            "headers.bad header",
            "secret",
            "rate_limit_per_second"
        ]
    );
    assert_eq!(
        errors[5].to_string(),
        "rate_limit_per_second: 0 is out of range 1..=10000"
    );
}

#[test]
fn the_document_is_the_contract_s_shape() {
    let fields = WebhookFields {
        url: Some("https://a.example/h".into()),
        event_types: Some(vec!["*".into()]),
        headers: Some(vec![("X-Mixpeek-Secret".into(), "s".into())]),
        rate_limit_per_second: Some(20),
        ..WebhookFields::default()
    };
    let document = WebhookDocument::new(fields, "whsec_x".into(), None).to_document();
    let keys: Vec<&str> = document.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "_id",
            "url",
            "event_types",
            "secret",
            "headers",
            "enabled",
            "rate_limit_per_second",
            "created_at",
            "updated_at"
        ]
    );
    assert_eq!(document.get_i32("rate_limit_per_second").unwrap(), 20);
    assert!(document.get_bool("enabled").unwrap());
    assert!(document.get_datetime("created_at").is_ok());
    assert_eq!(
        document
            .get_document("headers")
            .unwrap()
            .get_str("X-Mixpeek-Secret")
            .unwrap(),
        "s"
    );
}
