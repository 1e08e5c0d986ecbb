//! Reading stored webhook documents: the contract's shape, bad fields, sealed values.

use mongodb::bson::doc;

use super::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn parses_a_contract_document() {
    let spec = spec_from_doc(
        &doc! {"_id": "wh_0123456789abcdef", "url": "https://a.example/h", "event_types": ["*"],
        "secret": SECRET, "headers": {"X-Mixpeek-Secret": "s"}, "rate_limit_per_second": 50},
        &SecretBox::default(),
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(
        spec.filter,
        EventFilter::All {
            operational: vec![]
        }
    );
    assert!(spec.enabled);
    assert!(!spec.paused);
    assert_eq!(spec.rate_limit_per_second, Some(50));
    assert_eq!(
        &*spec.headers,
        &[("X-Mixpeek-Secret".to_owned(), "s".to_owned())]
    );
}

#[test]
fn bad_documents_name_the_problem() {
    let base =
        doc! {"_id": "wh_1", "url": "https://a.example/h", "event_types": ["x"], "secret": SECRET};
    let with = |k: &str, v: Bson| {
        let mut d = base.clone();
        d.insert(k, v);
        d
    };
    let cases = [
        (with("url", Bson::String("not a url".into())), "url"),
        (with("event_types", Bson::Array(vec![])), "event_types"),
        (with("secret", Bson::String("nope".into())), "secret"),
        (
            with("headers", Bson::Document(doc! {"bad header": "v"})),
            "legal HTTP header",
        ),
        (
            with("headers", Bson::Document(doc! {"X-Ok": "line\nbreak"})),
            "legal HTTP header",
        ),
        (with("rate_limit_per_second", Bson::Int32(0)), "rate_limit"),
        (with("enabled", Bson::String("yes".into())), "enabled"),
        (with("paused", Bson::Int32(1)), "paused"),
    ];
    for (doc, expected) in cases {
        let error = spec_from_doc(&doc, &SecretBox::default(), SystemTime::now())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{doc}: {error}");
    }
    // Plaintext is accepted here and refused at delivery time.
    assert!(spec_from_doc(
        &with("url", Bson::String("http://a.example/h".into())),
        &SecretBox::default(),
        SystemTime::now()
    )
    .is_ok());
}

#[test]
fn sealed_values_are_opened_and_plaintext_ones_used_as_they_are() {
    let secrets = SecretBox::new(Some([3; 32]));
    let now = SystemTime::now();
    let previous = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let document = doc! {"_id": "wh_1", "url": "https://a.example/h", "event_types": ["*"],
    "secret": secrets.seal(SECRET),
    "previous_secrets": [
        {"secret": secrets.seal(previous), "expires_at": crate::store::bson_date(now + std::time::Duration::from_secs(60))},
    ],
    "headers": {"X-Mixpeek-Secret": secrets.seal("s3cret"), "X-Plain": "as-is"}};
    let spec = spec_from_doc(&document, &secrets, now).unwrap();
    let mut headers = spec.headers.to_vec();
    headers.sort();
    assert_eq!(
        headers,
        [
            ("X-Mixpeek-Secret".to_owned(), "s3cret".to_owned()),
            ("X-Plain".to_owned(), "as-is".to_owned())
        ]
    );
    // Both secrets sign, exactly as if they had been stored in plaintext.
    let plain = doc! {"_id": "wh_1", "url": "https://a.example/h", "event_types": ["*"],
    "secret": SECRET,
    "previous_secrets": [
        {"secret": previous, "expires_at": crate::store::bson_date(now + std::time::Duration::from_secs(60))},
    ]};
    let expected = spec_from_doc(&plain, &SecretBox::default(), now).unwrap();
    let at = 1_700_000_000;
    let signatures = spec.signer.header_value("evt_1", at, b"{}", now);
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert_eq!(
        signatures,
        expected.signer.header_value("evt_1", at, b"{}", now)
    );

    // Without the key, or with another, the webhook is refused naming the field only.
    for other in [SecretBox::default(), SecretBox::new(Some([4; 32]))] {
        let error = spec_from_doc(&document, &other, now).unwrap_err();
        assert!(matches!(&error, BadWebhook::Sealed { field, .. } if field == "secret"));
        let mut headers_only = document.clone();
        headers_only.insert("secret", SECRET);
        let error = spec_from_doc(&headers_only, &other, now)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("headers.X-Mixpeek-Secret:"), "{error}");
        let sealed = document
            .get_document("headers")
            .unwrap()
            .get_str("X-Mixpeek-Secret")
            .unwrap();
        assert!(
            !error.contains("s3cret") && !error.contains(sealed),
            "{error}"
        );
    }
}

#[test]
fn a_namespace_is_read_and_an_odd_one_refused() {
    let base =
        doc! {"_id": "wh_1", "url": "https://a.example/h", "event_types": ["*"], "secret": SECRET};
    let read =
        |d: &mongodb::bson::Document| spec_from_doc(d, &SecretBox::default(), SystemTime::now());
    // Written before namespaces: the operator's.
    assert_eq!(read(&base).unwrap().namespace_id, None);
    let mut namespaced = base.clone();
    namespaced.insert("namespace_id", "ns_a");
    assert_eq!(
        read(&namespaced).unwrap().namespace_id.as_deref(),
        Some("ns_a")
    );
    for bad in [
        Bson::String("a b".into()),
        Bson::Int32(3),
        Bson::String("".into()),
    ] {
        let mut d = base.clone();
        d.insert("namespace_id", bad);
        let error = read(&d).unwrap_err().to_string();
        assert!(error.starts_with("namespace_id"), "{error}");
    }
}
