//! A small JSON client for herald's API, for the API stories.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// One response: status, headers and the body parsed as JSON (`Value::Null` when empty,
/// `Value::String` of the raw text when not JSON).
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

pub struct Api {
    base: String,
    key: Option<String>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Api {
    pub fn new(listen: SocketAddr, key: Option<&str>) -> Self {
        Self {
            base: format!("http://{listen}"),
            key: key.map(str::to_owned),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The same API without a key.
    pub fn anonymous(&self) -> Self {
        Self {
            base: self.base.clone(),
            key: None,
            client: self.client.clone(),
        }
    }

    /// Sends `body` (raw bytes) with extra headers.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> ApiResponse {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body.into())).expect("request");
        let response = self.client.request(request).await.expect("herald answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        ApiResponse {
            status,
            headers,
            body,
        }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> ApiResponse {
        let (bytes, headers): (Bytes, &[(&str, &str)]) = match body {
            Some(v) => (
                Bytes::from(v.to_string()),
                &[("content-type", "application/json")],
            ),
            None => (Bytes::new(), &[]),
        };
        self.raw(method, path, bytes, headers).await
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.send("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> ApiResponse {
        self.send("POST", path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> ApiResponse {
        self.send("PATCH", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> ApiResponse {
        self.send("DELETE", path, None).await
    }
}

/// Asserts the contract's error shape and returns the message.
pub fn assert_error(response: &ApiResponse, status: u16) -> String {
    assert_eq!(
        response.status, status,
        "unexpected status; body: {}",
        response.body
    );
    let code = response.body["error"]["code"].as_str();
    let message = response.body["error"]["message"].as_str();
    assert!(
        code.is_some() && message.is_some(),
        "not an error body: {}",
        response.body
    );
    message.unwrap().to_owned()
}
