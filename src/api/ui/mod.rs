//! The delivery inspector (`GET /ui/`, contract §7): a page served from memory by every
//! daemon, that reads and acts through the `/v1` API with the key its user enters.
//!
//! The page is plain ES modules and one stylesheet, written by hand and compiled into the
//! binary ([`assets`]): no build step, no Node, nothing fetched from elsewhere. It holds no
//! data of its own, so its routes are public; the key lives in the tab's `sessionStorage`
//! and travels only in the `Authorization` header of the page's own API calls.
//!
//! Caching: `index.html` is `no-cache` and names every other asset under a directory
//! named after a hash of all of them (`/ui/<version>/app.js`), so those are `immutable` —
//! a new binary changes the hash, and browsers fetch the new files. A stale version is a
//! 404, which a reload of `index.html` cures.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles only from the
//! page's origin, no inline code, no framing) and is gzip-compressed when the client
//! accepts it (compressed once, at first use).

mod assets;

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};

use crate::api::{error, ApiRequest, Body};
use assets::{Asset, ASSETS, INDEX};

/// The policy every `/ui` answer carries. `connect-src 'self'`: the page talks only to the
/// daemon that served it; `img-src data:` for the inline icon.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The placeholder in `index.html` replaced by the assets' directory.
const VERSION_MARK: &str = "{{version}}";

/// The assets, ready to serve: the version, `index.html` with it filled in, and each file
/// with its gzip form.
struct Built {
    version: String,
    index: Prepared,
    files: Vec<(&'static str, Prepared)>,
}

struct Prepared {
    content_type: &'static str,
    plain: Bytes,
    gzip: Option<Bytes>,
}

impl Prepared {
    fn new(content_type: &'static str, plain: Bytes) -> Self {
        let gzip = gzip(&plain).filter(|g| g.len() < plain.len());
        Self {
            content_type,
            plain,
            gzip,
        }
    }
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let version = version(ASSETS);
        let index = INDEX.body.replace(VERSION_MARK, &version);
        Built {
            index: Prepared::new(INDEX.content_type, Bytes::from(index)),
            files: ASSETS
                .iter()
                .map(|a| {
                    (
                        a.name,
                        Prepared::new(a.content_type, Bytes::from_static(a.body.as_bytes())),
                    )
                })
                .collect(),
            version,
        }
    })
}

/// The first 12 hex digits of a SHA-256 over every asset's name and bytes.
fn version(assets: &[Asset]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for asset in assets {
        hasher.update(asset.name.as_bytes());
        hasher.update([0]);
        hasher.update(asset.body.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn gzip(bytes: &[u8]) -> Option<Bytes> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

/// Serves `GET`/`HEAD` of `/ui`, `/ui/` and `/ui/<version>/<asset>`.
pub fn serve(request: &ApiRequest) -> Response<Body> {
    let method = &request.parts.method;
    if method != Method::GET && method != Method::HEAD {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here; allowed: GET"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let path = request.parts.uri.path();
    let accepts_gzip = accepts_gzip(request.header("accept-encoding"));
    let built = built();
    let mut response = match path.strip_prefix("/ui") {
        // The page's relative asset paths need the trailing slash.
        Some("") => redirect("/ui/"),
        Some("/") | Some("/index.html") => file(
            &built.index,
            accepts_gzip,
            "no-cache",
            method == Method::HEAD,
        ),
        Some(rest) => {
            let mut parts = rest.trim_start_matches('/').splitn(2, '/');
            let (version, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            match built.files.iter().find(|(n, _)| *n == name) {
                Some((_, asset)) if version == built.version => file(
                    asset,
                    accepts_gzip,
                    "public, max-age=31536000, immutable",
                    method == Method::HEAD,
                ),
                _ => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such file in this version of the inspector; reload /ui/",
                ),
            }
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "not an inspector path"),
    };
    secure(response.headers_mut());
    response
}

/// Whether an `Accept-Encoding` value allows gzip (`q=0` refuses it).
fn accepts_gzip(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        v.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

fn file(asset: &Prepared, accepts_gzip: bool, cache: &'static str, head: bool) -> Response<Body> {
    let (body, encoded) = match (&asset.gzip, accepts_gzip) {
        (Some(gzip), true) => (gzip.clone(), true),
        _ => (asset.plain.clone(), false),
    };
    let length = body.len();
    let mut response = Response::new(Full::new(if head { Bytes::new() } else { body }));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if encoded {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if head {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

/// The headers every `/ui` answer carries, errors included.
fn secure(headers: &mut hyper::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("br;q=1.0, gzip;q=0.8")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn the_index_names_the_current_version_and_every_asset_exists() {
        let built = built();
        let index = std::str::from_utf8(&built.index.plain).unwrap();
        assert!(!index.contains(VERSION_MARK));
        assert!(index.contains(&format!("{}/app.js", built.version)));
        assert_eq!(built.version.len(), 12);
        for asset in ASSETS {
            // Every module the page imports is served (`./x.js` from a module).
            for line in asset.body.lines().filter(|l| l.starts_with("import ")) {
                let name = line
                    .rsplit_once("from \"./")
                    .map(|(_, n)| n.trim_end_matches("\";"))
                    .unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "{} imports {name:?}, which is not served",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn no_asset_needs_unsafe_inline() {
        for asset in ASSETS.iter().chain([&INDEX]) {
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                " style=\"",
                "<script>",
                "document.write",
            ] {
                assert!(
                    !asset.body.contains(forbidden),
                    "{} contains {forbidden:?}",
                    asset.name
                );
            }
        }
    }
}
