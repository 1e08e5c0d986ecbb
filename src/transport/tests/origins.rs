//! The origins a pool remembers, and the URLs it has judged.

use std::time::Duration;

use herald_actors::DeliveryError;

use super::*;
use crate::transport::origins::{Origins, MAX_KNOWN_URLS, PRUNE_ORIGINS_AT};

#[test]
fn origins_nobody_sends_to_are_forgotten_once_many_are_known() {
    let origins = Origins::new(Duration::from_secs(90));
    let guard = SsrfGuard::new(Vec::new());
    let url = |i: usize| -> Arc<str> { format!("https://host{i}.example/").into() };
    let origin = |i: usize| origins.target(&url(i), &guard).expect("a valid URL").origin;
    let in_use = origin(0);
    origin(1).set_warm(true);
    for i in 2..PRUNE_ORIGINS_AT {
        origin(i);
    }
    let known = |o: &Origins| o.known.lock().unwrap().by_key.len();
    assert_eq!(known(&origins), PRUNE_ORIGINS_AT);
    // One more: the cold, unused ones go; one in use and one with a live connection stay.
    origin(PRUNE_ORIGINS_AT);
    assert_eq!(known(&origins), 3);
    assert!(Arc::ptr_eq(&in_use, &origin(0)));
}

#[test]
fn a_url_is_judged_once_and_the_verdicts_kept_are_bounded() {
    let origins = Origins::new(Duration::from_secs(90));
    let guard = SsrfGuard::new(Vec::new());
    let plaintext: Arc<str> = "http://host.example/hook".into();
    let refused = origins.target(&plaintext, &guard).unwrap_err();
    assert!(
        matches!(refused, DeliveryError::InvalidUrl(_)),
        "{refused:?}"
    );
    // The verdict is remembered, and given again as it was.
    let urls = |o: &Origins| o.known.lock().unwrap().by_url.len();
    assert_eq!(urls(&origins), 1);
    assert_eq!(origins.target(&plaintext, &guard).unwrap_err(), refused);
    // Two URLs on one origin share it.
    let a = origins
        .target(&"https://host.example/a".into(), &guard)
        .unwrap();
    let b = origins
        .target(&"https://HOST.example/b".into(), &guard)
        .unwrap();
    assert!(Arc::ptr_eq(&a.origin, &b.origin));
    assert_eq!(b.uri.path(), "/b");
    for i in 0..MAX_KNOWN_URLS + 10 {
        let url: Arc<str> = format!("https://host.example/{i}").into();
        origins.target(&url, &guard).unwrap();
    }
    assert!(urls(&origins) <= MAX_KNOWN_URLS);
}
