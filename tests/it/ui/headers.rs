//! What `/ui/` serves, without a browser: content types, the security headers on every
//! answer, caching by version, gzip when accepted, and a page that holds no data — a wrong
//! key gets the same page, and the API behind it refuses that key.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use super::KEY;
use crate::daemon::start_with_key;
use crate::fixtures::database;

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

async fn fetch(base: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("herald answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

fn assert_secure(answer: &Answer, what: &str) {
    let csp = header(answer, "content-security-policy");
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(part), "{what}: the CSP lacks {part}: {csp}");
    }
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
    assert_eq!(header(answer, "x-frame-options"), "DENY", "{what}");
    assert_eq!(
        header(answer, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    assert_eq!(header(answer, "referrer-policy"), "no-referrer", "{what}");
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[tokio::test]
async fn the_inspector_is_served_from_memory_with_strict_headers() {
    let (uri, name, _db) = database("ui_headers").await;
    let (daemon, api) = start_with_key(&uri, &name, KEY, |_| {}).await;
    let base = format!("http://{}", daemon.listen);

    // The page: public, never cached, secured, and it names its versioned assets.
    let page = fetch(&base, "GET", "/ui/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert_secure(&page, "/ui/");
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    let version = html
        .split("href=\"./")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the stylesheet's versioned path")
        .to_owned();
    assert_eq!(version.len(), 12, "{html}");
    assert!(
        html.contains(&format!("src=\"./{version}/app.js\"")),
        "{html}"
    );
    assert!(!html.contains("<script>"), "no inline script: {html}");

    // `/ui` sends the browser to `/ui/`, where relative asset paths resolve.
    let bare = fetch(&base, "GET", "/ui", &[]).await;
    assert_eq!(bare.status, 308);
    assert_eq!(header(&bare, "location"), "/ui/");

    // Assets: their types, cached for good under their version, gzip when accepted.
    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("delivery.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let path = format!("/ui/{version}/{file}");
        let plain = fetch(&base, "GET", &path, &[]).await;
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(header(&plain, "content-type"), content_type, "{path}");
        assert_eq!(
            header(&plain, "cache-control"),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert!(plain.headers.get("content-encoding").is_none(), "{path}");
        assert_secure(&plain, &path);

        let zipped = fetch(&base, "GET", &path, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(zipped.status, 200);
        assert_eq!(header(&zipped, "content-encoding"), "gzip", "{path}");
        assert_eq!(header(&zipped, "vary"), "accept-encoding");
        assert!(zipped.body.len() < plain.body.len(), "{path}");
        assert_eq!(gunzip(&zipped.body), plain.body.to_vec(), "{path}");
    }

    // Another version, or a file that is not one of the page's: 404, still secured.
    for path in [
        "/ui/000000000000/app.js".to_owned(),
        format!("/ui/{version}/secret.txt"),
        format!("/ui/{version}/../../v1/webhooks"),
    ] {
        let missing = fetch(&base, "GET", &path, &[]).await;
        assert_eq!(missing.status, 404, "{path}");
        assert_secure(&missing, &path);
    }
    let post = fetch(&base, "POST", "/ui/", &[]).await;
    assert_eq!(post.status, 405);
    assert_eq!(header(&post, "allow"), "GET");

    // The page holds no data: with a wrong key it is the same page, and every data call
    // it would make is refused.
    let created = api
        .post(
            "/v1/webhooks",
            json!({"url": "https://hooks.example.com/secret-hook", "event_types": ["*"], "name": "visible-only-with-a-key"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let wrong = fetch(&base, "GET", "/ui/", &[("authorization", "Bearer wrong")]).await;
    assert_eq!(wrong.status, 200);
    assert_eq!(wrong.body, page.body);
    let text = String::from_utf8_lossy(&wrong.body);
    assert!(!text.contains("visible-only-with-a-key") && !text.contains("secret-hook"));
    let refused = fetch(
        &base,
        "GET",
        "/v1/webhooks",
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(refused.status, 401);

    daemon.stop().await.unwrap();
}
