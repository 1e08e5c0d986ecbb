//! The inspector's files, compiled in from `src/api/ui/assets/`. Adding a file means adding
//! it here; a unit test checks that every module a file imports is listed.

/// One file of the page.
pub struct Asset {
    /// Its name under `/ui/<version>/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("assets/", $name)),
        }
    };
}

/// The page itself (`GET /ui/`), with `{{version}}` where the assets' directory goes.
pub const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Everything `index.html` loads, directly or through imports.
pub const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("webhooks.js", JS),
    asset!("webhook.js", JS),
    asset!("deliveries.js", JS),
    asset!("delivery.js", JS),
    asset!("catalog.js", JS),
    asset!("cluster.js", JS),
];
