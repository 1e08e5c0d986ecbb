//! A daemon that a hostile neighbour cannot starve or drive (issue 20): thousands of idle
//! or trickling connections do not stop a well-behaved client from being answered
//! ([`flood`]); without an API key, a web page in a browser on the same host can neither
//! write through the API nor read it by DNS rebinding, while the CLI still works
//! ([`browser`]); a deleted webhook's pending deliveries are retired, not kept forever
//! ([`retire`]).

mod browser;
mod flood;
mod retire;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixtures::complete_response;

/// Sends `request` (raw HTTP/1.1) on a fresh connection and returns the status and body of
/// the answer, or `None` when the connection is closed without one (refused at the cap,
/// say) or nothing complete arrives within `within`.
async fn exchange(addr: SocketAddr, request: &[u8], within: Duration) -> Option<(u16, String)> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(request).await.ok()?;
        read_answer(&mut stream).await
    };
    tokio::time::timeout(within, attempt).await.ok().flatten()
}

/// The answer on a connection whose request was sent already, within `within`.
async fn exchange_on(
    stream: &mut tokio::net::TcpStream,
    within: Duration,
) -> Option<(u16, String)> {
    tokio::time::timeout(within, read_answer(stream))
        .await
        .ok()
        .flatten()
}

async fn read_answer(stream: &mut tokio::net::TcpStream) -> Option<(u16, String)> {
    {
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(answer) = complete_response(&raw) {
                return Some(answer);
            }
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return complete_response(&raw);
            }
            raw.extend_from_slice(&buf[..n]);
        }
    }
}

/// A raw request with a JSON body (`body` may be empty) and extra header lines.
fn request(method: &str, path: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    head.into_bytes()
}
