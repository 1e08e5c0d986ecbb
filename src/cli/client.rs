//! The HTTP client of the CLI: one request to a running daemon's API, JSON in and out.
//!
//! hyper-util's pooled client over hyper-rustls speaks plain `http://` (the local daemon)
//! and `https://` (a remote daemon behind TLS, verified against the web PKI roots). Every
//! failure becomes a [`CliError`] whose `Display` is one line: the API's own error message
//! when the daemon answered, or what went wrong on the way (refused, timed out, bad URL).

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::CliError;
use crate::text::one_line;

/// How long connecting to the daemon may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one whole request (connect, send, read the answer) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest answer read from the daemon; larger ones are refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

const USER_AGENT: &str = concat!("herald-cli/", env!("CARGO_PKG_VERSION"));

/// A client of one daemon's API.
pub struct ApiClient {
    /// The base URL without a trailing slash (a path prefix, for a reverse proxy, is kept).
    base: String,
    api_key: Option<String>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ApiClient {
    /// A client of the daemon at `base_url` (`http://` or `https://`), sending `api_key` as
    /// a bearer token when given.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self, CliError> {
        let base = base_url.trim().trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| CliError::Usage(format!("--url: {base_url:?} is not a URL")))?;
        match uri.scheme_str() {
            Some("http") | Some("https") if uri.host().is_some_and(|h| !h.is_empty()) => {}
            _ => {
                return Err(CliError::Usage(format!(
                    "--url: {base_url:?} must be an http:// or https:// URL with a host"
                )))
            }
        }
        if uri.query().is_some() {
            return Err(CliError::Usage(format!(
                "--url: {base_url:?} must not have a query string"
            )));
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Usage(format!("TLS setup failed: {e}")))?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Ok(Self {
            base,
            api_key: api_key.filter(|k| !k.is_empty()),
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The daemon's base URL, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` → the JSON answer of a 2xx.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body → the JSON answer of a 2xx.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body → the JSON answer of a 2xx.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// `DELETE path`; a 204 answers `Value::Null`.
    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::DELETE, path, None).await
    }

    /// Sends one request; a non-2xx answer becomes [`CliError::Api`] carrying the API's
    /// error code and message.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, USER_AGENT);
        if let Some(key) = &self.api_key {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let bytes = match body {
            Some(value) => {
                builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(bytes)).map_err(|e| {
            CliError::Usage(format!(
                "cannot build a request to {url}: {}",
                one_line(&e.to_string())
            ))
        })?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = response.status();
            let collected = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| CliError::Transport(format!("reading the answer from {url}: {e}")))?;
            Ok::<_, CliError>((status, collected.to_bytes()))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                CliError::Transport(format!(
                    "{method} {url}: no answer within {}s",
                    REQUEST_TIMEOUT.as_secs()
                ))
            })??;
        decode(status, &bytes, &method, path)
    }

    /// Every result of a cursor-paginated listing: `page(cursor)` builds each page's path;
    /// `next_cursor` is followed until it is null.
    pub async fn list_all(
        &self,
        page: impl Fn(Option<String>) -> String,
    ) -> Result<Vec<Value>, CliError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let answer = self.get(&page(cursor.clone())).await?;
            let results = answer["results"].as_array().cloned().unwrap_or_default();
            let empty = results.is_empty();
            all.extend(results);
            match answer["next_cursor"].as_str() {
                // A cursor that does not move would loop forever; stop rather than hang.
                Some(next) if Some(next) != cursor.as_deref() && !empty => {
                    cursor = Some(next.to_owned())
                }
                _ => return Ok(all),
            }
        }
    }

    fn transport_error(&self, error: &hyper_util::client::legacy::Error) -> CliError {
        let reason = root_cause(error);
        if error.is_connect() {
            let hint = if reason.contains("refused") {
                " — is `herald serve` running there? Set --url or HERALD_URL"
            } else if reason.contains("corrupt message") || reason.contains("InvalidContentType") {
                " — the daemon does not speak TLS there; use an http:// URL"
            } else {
                ""
            };
            CliError::Transport(format!(
                "cannot connect to herald at {}: {reason}{hint}",
                self.base
            ))
        } else {
            CliError::Transport(format!(
                "request to herald at {} failed: {reason}",
                self.base
            ))
        }
    }
}

/// A 2xx answer's JSON (or `Null` when empty), or the API error it carries.
fn decode(
    status: StatusCode,
    bytes: &[u8],
    method: &Method,
    path: &str,
) -> Result<Value, CliError> {
    let parsed: Option<Value> = if bytes.is_empty() {
        Some(Value::Null)
    } else {
        serde_json::from_slice(bytes).ok()
    };
    if status.is_success() {
        return parsed.ok_or_else(|| {
            CliError::Transport(format!(
                "{method} {path}: the answer ({status}) is not JSON; is --url pointing at herald?"
            ))
        });
    }
    let error = parsed.as_ref().map(|v| &v["error"]);
    match (
        error.and_then(|e| e["code"].as_str()),
        error.and_then(|e| e["message"].as_str()),
    ) {
        (Some(code), Some(message)) => Err(CliError::Api {
            status: status.as_u16(),
            code: code.to_owned(),
            message: one_line(message),
        }),
        // Not herald's error shape: something else answered (a proxy, another service).
        _ => {
            let text = String::from_utf8_lossy(bytes);
            let text = one_line(&text);
            let excerpt = if text.is_empty() {
                String::new()
            } else {
                format!(": {}", truncate(&text, 200))
            };
            Err(CliError::Transport(format!(
                "{method} {path} answered {status} without herald's error body — is --url pointing at herald?{excerpt}"
            )))
        }
    }
}

/// The innermost error's text: "Connection refused (os error 111)" rather than hyper's
/// "client error (Connect)".
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    one_line(&current.to_string())
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max_chars).collect::<String>())
    }
}

/// One path segment: ids go into paths verbatim except for the characters that would end
/// or split the segment (the daemon matches raw segments, so nothing else is escaped).
pub fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        match byte {
            b'/' | b'?' | b'#' | b'%' | b' ' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{'
            | b'|' | b'}' => out.push_str(&format!("%{byte:02X}")),
            0..=0x20 | 0x7f..=0xff => out.push_str(&format!("%{byte:02X}")),
            _ => out.push(byte as char),
        }
    }
    out
}

/// `path?k=v&…` with the given (already-stringified) query parameters, `None`s skipped.
pub fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in params {
        if let Some(value) = value {
            query.append_pair(name, value);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", query.finish())
    } else {
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_surface_code_and_message() {
        let body = br#"{"error":{"code":"unauthorized","message":"missing or invalid API key"}}"#;
        let error =
            decode(StatusCode::UNAUTHORIZED, body, &Method::GET, "/v1/webhooks").unwrap_err();
        assert_eq!(
            error.to_string(),
            "missing or invalid API key (HTTP 401 unauthorized)"
        );
    }

    #[test]
    fn a_non_json_error_is_still_one_line() {
        let error = decode(
            StatusCode::BAD_GATEWAY,
            b"<html>\n<body>bad gateway</body>\n</html>",
            &Method::GET,
            "/v1/webhooks",
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("502"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn no_content_is_null() {
        assert_eq!(
            decode(StatusCode::NO_CONTENT, b"", &Method::DELETE, "/x").unwrap(),
            Value::Null
        );
    }

    #[test]
    fn segments_escape_only_what_would_break_the_path() {
        assert_eq!(segment("evt_1:wh_0123"), "evt_1:wh_0123");
        assert_eq!(segment("a/b?c#d"), "a%2Fb%3Fc%23d");
    }

    #[test]
    fn queries_skip_absent_parameters() {
        assert_eq!(
            with_query(
                "/v1/deliveries",
                &[("status", Some("failed".into())), ("limit", None)]
            ),
            "/v1/deliveries?status=failed"
        );
        assert_eq!(with_query("/v1/x", &[("a", None)]), "/v1/x");
        assert_eq!(
            with_query("/v1/x", &[("event_type", Some("a b&c".into()))]),
            "/v1/x?event_type=a+b%26c"
        );
    }

    #[test]
    fn base_urls_are_checked() {
        assert!(ApiClient::new("http://127.0.0.1:8080/", None).is_ok());
        assert!(ApiClient::new("https://herald.example.com/prefix", None).is_ok());
        assert!(ApiClient::new("127.0.0.1:8080", None).is_err());
        assert!(ApiClient::new("ftp://x", None).is_err());
    }
}
