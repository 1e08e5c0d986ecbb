//! A connection stays usable exactly as long as herald says it does: an answer given
//! before the request's body was read (no key, an unknown route, a body too large) says
//! `connection: close` and the connection then closes, so that a client does not send its
//! next request down it; an answer to a request whose body was read keeps it open.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{setup, API_KEY};
use crate::fixtures::complete_response;

const DEADLINE: Duration = Duration::from_secs(20);

/// Writes one request with a small JSON body and returns its answer's head and status.
async fn exchange(stream: &mut TcpStream, request_line: &str, key: Option<&str>) -> (u16, String) {
    let body =
        br#"{"url": "https://127.0.0.1:9/keep-alive", "event_types": ["*"], "enabled": false}"#;
    let auth = key
        .map(|k| format!("authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{request_line} HTTP/1.1\r\nhost: localhost\r\n{auth}content-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        while complete_response(&answer).is_none() {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("herald answers");
    let (status, _) = complete_response(&answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let head = text.split_once("\r\n\r\n").unwrap().0.to_ascii_lowercase();
    (status, head)
}

/// Whether herald closes the connection (reads reach end of stream) within the deadline.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_read_says_the_connection_closes_and_closes_it() {
    let (daemon, _api, _ids) = setup().await;

    // Refused before the body is read: no key, an unknown route.
    for (line, key, expected) in [
        ("POST /v1/webhooks", None, 401),
        ("POST /v1/no-such-route", Some(API_KEY), 404),
    ] {
        let mut stream = connect(daemon.listen).await;
        let (status, head) = exchange(&mut stream, line, key).await;
        assert_eq!(status, expected, "{line}: {head}");
        assert!(
            head.contains("connection: close"),
            "{line}: an answer before the body is read must say the connection closes: {head}"
        );
        assert!(
            closes(&mut stream).await,
            "{line}: the connection stays open"
        );
    }

    // Answered after the body was read: the same connection takes the next request.
    let mut stream = connect(daemon.listen).await;
    let (status, head) = exchange(&mut stream, "POST /v1/webhooks", Some(API_KEY)).await;
    assert_eq!(status, 201, "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let (status, head) = exchange(&mut stream, "POST /v1/webhooks", Some(API_KEY)).await;
    assert_eq!(
        status, 201,
        "the kept-alive connection takes a second request: {head}"
    );
}
