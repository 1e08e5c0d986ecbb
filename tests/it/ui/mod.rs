//! The delivery inspector (`/ui/`): what it serves and with which headers ([`headers`], no
//! browser), and an operator's session in headless Chromium ([`story`]) — enter a key, find
//! a failed delivery and its attempts, retry it once the receiver is healthy, pause and
//! resume a webhook, and hostile data shown as text. The story saves screenshots of the
//! main pages under `target/ui-screenshots/`.

mod api;
mod headers;
mod story;
mod webdriver;

use std::time::Duration;

/// Generous: Chromium, SecantusDB and herald share a small machine with other tests.
const DEADLINE: Duration = Duration::from_secs(30);

/// The API key of every daemon here.
const KEY: &str = "inspector-key-0123456789";
