//! The test harness itself works: MongoDB (with change streams), restarts, and the HTTPS
//! receiver with its scripts, timeouts and CA.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use mongodb::bson::{doc, Document};
use mongodb::change_stream::event::OperationType;

use crate::support::{
    eventually, https_client, shared, test_ca_pem_path, unique_db, HttpsClient, Receiver, Response,
    TestMongo,
};

async fn post(client: &HttpsClient, url: &str, body: &'static str) -> hyper::Response<Bytes> {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("webhook-id", "evt_smoke")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = client
        .request(request)
        .await
        .expect("request to the receiver");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    hyper::Response::from_parts(parts, body)
}

#[tokio::test]
async fn shared_mongo_answers_ping_and_stores_documents() {
    let client = shared().client().await;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping");

    let db = client.database(&unique_db("smoke_crud"));
    let coll = db.collection::<Document>("things");
    coll.insert_one(doc! { "_id": "a", "n": 1 }).await.unwrap();
    let found = coll.find_one(doc! { "_id": "a" }).await.unwrap();
    assert_eq!(found, Some(doc! { "_id": "a", "n": 1 }));
    db.drop().await.unwrap();
}

#[tokio::test]
async fn shared_mongo_change_stream_sees_an_insert() {
    let client = shared().client().await;
    let db = client.database(&unique_db("smoke_watch"));
    let coll = db.collection::<Document>("events");
    // Change streams need a replica set; SecantusDB advertises one.
    let mut stream = coll.watch().await.expect("open a change stream");

    coll.insert_one(doc! { "_id": "evt_1", "event_type": "object.created" })
        .await
        .unwrap();

    let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a change event within 10 s")
        .expect("the stream is open")
        .expect("a valid change event");
    assert_eq!(event.operation_type, OperationType::Insert);
    let full = event.full_document.expect("inserts carry the document");
    assert_eq!(full.get_str("event_type").unwrap(), "object.created");
    db.drop().await.unwrap();
}

#[tokio::test]
async fn dedicated_mongo_keeps_its_data_across_a_restart() {
    let mut mongo = TestMongo::spawn().await;
    let db_name = unique_db("smoke_restart");
    let port = mongo.port();
    {
        let client = mongo.client().await;
        let coll = client.database(&db_name).collection::<Document>("c");
        coll.insert_one(doc! { "_id": 1 }).await.unwrap();
    }

    mongo.stop().await;
    mongo.stop().await; // idempotent
    let down = mongodb::Client::with_uri_str(format!("{}&serverSelectionTimeoutMS=300", mongo.uri))
        .await
        .unwrap();
    let ping = down.database("admin").run_command(doc! { "ping": 1 }).await;
    assert!(ping.is_err(), "a stopped server must not answer");

    mongo.restart().await;
    assert_eq!(
        mongo.port(),
        port,
        "a restart keeps the port (and so the URI)"
    );

    let client = mongo.client().await;
    let coll = client.database(&db_name).collection::<Document>("c");
    assert_eq!(
        coll.count_documents(doc! {}).await.unwrap(),
        1,
        "log:\n{}",
        mongo.log_tail()
    );

    // A crash (SIGKILL) is survivable too.
    mongo.kill();
    mongo.restart().await;
    let client = mongo.client().await;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping after a crash and restart");
}

#[test]
fn unique_db_names_are_unique_and_valid() {
    let a = unique_db("my test/db.name");
    let b = unique_db("my test/db.name");
    assert_ne!(a, b);
    for name in [&a, &b, &unique_db(&"x".repeat(200))] {
        assert!(name.len() <= 63, "{name} is too long");
        assert!(!name.contains(['/', '.', ' ', '$', '"', '\\']), "{name}");
    }
}

#[tokio::test]
async fn receiver_follows_its_script_then_the_default() {
    let receiver = Receiver::start().await;
    receiver.script([
        Response::status(500),
        Response::status(503).header("retry-after", "7"),
    ]);
    let client = https_client();

    let first = post(&client, &receiver.url, r#"{"n":1}"#).await;
    let second = post(&client, &receiver.url, r#"{"n":2}"#).await;
    let third = post(&client, &receiver.url, r#"{"n":3}"#).await;
    assert_eq!(first.status(), 500);
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "7");
    assert_eq!(third.status(), 200);

    receiver.respond_with(410);
    assert_eq!(post(&client, &receiver.url, "{}").await.status(), 410);

    let requests = receiver.wait_for(4, Duration::from_secs(5)).await;
    assert_eq!(receiver.count(), 4);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/hook");
    assert_eq!(requests[0].header("Webhook-Id"), Some("evt_smoke"));
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    assert_eq!(requests[1].json()["n"], 2);
    // The client offers h2 and h1 via ALPN; the receiver speaks both and picks h2.
    assert_eq!(requests[0].version, hyper::Version::HTTP_2);
    assert!(requests.windows(2).all(|w| w[0].at <= w[1].at));
}

#[tokio::test]
async fn receiver_fail_first_then_succeeds_on_another_path() {
    let receiver = Receiver::start().await;
    receiver.fail_first(2, 500);
    let client = https_client();
    let url = receiver.url_with_path("/other?x=1");
    let statuses = [
        post(&client, &url, "{}").await.status(),
        post(&client, &url, "{}").await.status(),
        post(&client, &url, "{}").await.status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [500, 500, 200]);
    let requests = receiver.requests();
    assert_eq!(requests[2].path, "/other");
    assert_eq!(requests[2].query.as_deref(), Some("x=1"));
}

#[tokio::test]
async fn receiver_can_hang_to_provoke_timeouts() {
    let receiver = Receiver::start().await;
    receiver.script([Response::hang()]);
    let client = https_client();

    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        post(&client, &receiver.url, "{}"),
    )
    .await;
    assert!(hung.is_err(), "a hanging response must not arrive");
    assert_eq!(receiver.count(), 1, "the hung request is still recorded");

    // Delayed (not hung) responses arrive after their delay.
    receiver.respond_with_response(Response::status(202).delay(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    assert_eq!(post(&client, &receiver.url, "{}").await.status(), 202);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn receiver_on_localhost_is_trusted_via_the_test_ca() {
    let receiver = Receiver::start_on_localhost().await;
    assert!(
        receiver.url.starts_with("https://localhost:"),
        "{}",
        receiver.url
    );
    assert_eq!(receiver.ca_pem_path, test_ca_pem_path());
    let pem = std::fs::read_to_string(&receiver.ca_pem_path).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    let response = post(&https_client(), &receiver.url, "{}").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn dropping_the_receiver_closes_it() {
    let receiver = Receiver::start().await;
    let url = receiver.url.clone();
    let client = https_client();
    assert_eq!(post(&client, &url, "{}").await.status(), 200);
    drop(receiver);

    eventually(
        Duration::from_secs(5),
        "the dropped receiver refuses requests",
        || {
            let client = https_client();
            let url = url.clone();
            async move {
                let request = hyper::Request::post(&url)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                client.request(request).await.is_err()
            }
        },
    )
    .await;
}

#[tokio::test]
#[should_panic(expected = "expected at least 1 request(s) within 200ms, got 0")]
async fn wait_for_explains_what_is_missing() {
    let receiver = Receiver::start().await;
    receiver.wait_for(1, Duration::from_millis(200)).await;
}

#[tokio::test]
#[should_panic(expected = "waiting until the impossible happens")]
async fn eventually_panics_with_its_description() {
    eventually(
        Duration::from_millis(100),
        "the impossible happens",
        || async { false },
    )
    .await;
}
