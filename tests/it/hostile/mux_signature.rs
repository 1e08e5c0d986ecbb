//! Hostile `Mux-Signature` headers — missing, not UTF-8, stale, huge, repeated a thousand
//! times, signed with another secret — are a 401 `invalid_signature` and change nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald::inbound::signature;
use serde_json::Value;

use super::{assert_healthy, setup, MUX_SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mux_signature_headers_are_401_and_change_nothing() {
    let (_daemon, api, ids) = setup().await;
    let path = format!("/v1/webhooks/mux/{}", ids.connection);
    let body = br#"{"type":"video.asset.deleted","id":"e1","data":{"id":"asset_1"}}"#;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = signature::sign(MUX_SECRET, now, body);
    let v1 = good.split_once(",v1=").unwrap().1.to_owned();
    let many = vec![format!("v1={v1}"); 1_000].join(",");
    let long = format!("t={now},{}", "x".repeat(60_000));
    let headers: Vec<(&str, Vec<u8>)> = vec![
        ("none", Vec::new()),
        ("not UTF-8", b"t=1,v1=\xff\xfe".to_vec()),
        ("garbage", b"garbage".to_vec()),
        (
            "a stale timestamp",
            signature::sign(MUX_SECRET, now - 3_600, body).into(),
        ),
        (
            "a far-future timestamp",
            signature::sign(MUX_SECRET, u64::MAX / 2, body).into(),
        ),
        (
            "a huge timestamp",
            format!("t={},v1={v1}", "9".repeat(400)).into(),
        ),
        ("1,000 signatures", format!("t={now},{many}").into()),
        ("60 kB of one part", long.into()),
        (
            "another secret",
            signature::sign("not the secret", now, body).into(),
        ),
        ("only separators", b",,,=,=,,".to_vec()),
    ];
    for (name, value) in headers {
        let mut builder = hyper::Request::post(format!("http://{}{path}", _daemon.listen))
            .header("content-type", "application/json");
        if !value.is_empty() {
            builder = builder.header(
                "mux-signature",
                hyper::header::HeaderValue::from_bytes(&value).unwrap(),
            );
        }
        let (status, answer) = send_request(builder, Bytes::from_static(body)).await;
        let what = format!("a Mux-Signature with {name}");
        // A header over hyper's limits may be refused by hyper itself (431, no JSON body).
        if status == 431 {
            continue;
        }
        assert_eq!(status, 401, "{what}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        assert_eq!(
            answer["error"]["code"], "invalid_signature",
            "{what}: {answer}"
        );
    }
    assert_healthy(&api).await;
}

/// Sends one request with a plain hyper client; the status and the body as text.
async fn send_request(builder: hyper::http::request::Builder, body: Bytes) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let response = client
        .request(builder.body(Full::new(body)).unwrap())
        .await
        .expect("herald answers");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
