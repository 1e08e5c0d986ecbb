//! Just enough W3C WebDriver to drive headless Chromium through `chromedriver`: a session,
//! navigation, finding elements by CSS, clicks, typing, text, scripts, screenshots.
//!
//! `chromedriver` (Debian's `chromium-driver`) is spawned on a free loopback port with a
//! fresh profile directory and stopped when the [`Browser`] is dropped. Nothing is
//! downloaded: without the packages the test fails, naming the command that installs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// The key W3C WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// One headless Chromium, driven through its own `chromedriver`.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: Client<HttpConnector, Full<Bytes>>,
    _profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_path = std::env::var("HERALD_CHROMEDRIVER").unwrap_or(CHROMEDRIVER.into());
        let chromium = std::env::var("HERALD_CHROMIUM").unwrap_or(CHROMIUM.into());
        if !Path::new(&driver_path).exists() || !Path::new(&chromium).exists() {
            panic!(
                "the browser tests need {chromium} and {driver_path}: install them with `apt-get install -y chromium chromium-driver`"
            );
        }
        let port = crate::daemon::free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e}"));
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            _profile: profile,
        };
        let status_url = format!("{}/status", browser.base);
        crate::support::eventually(Duration::from_secs(30), "chromedriver is ready", || {
            let this = &browser;
            let url = status_url.clone();
            async move {
                this.raw("GET", &url, None)
                    .await
                    .is_some_and(|v| v["value"]["ready"] == true)
            }
        })
        .await;
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ]);
        let session = browser
            .command(
                "POST",
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                    "goog:loggingPrefs": {"browser": "ALL"},
                }}}),
            )
            .await;
        browser.session = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_owned();
        browser.resize(width, height).await;
        browser
    }

    async fn raw(&self, method: &str, url: &str, body: Option<Value>) -> Option<Value> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .ok()?;
        let response = self.client.request(request).await.ok()?;
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&bytes).ok()
    }

    /// One command of the session; its `value`, or a panic with WebDriver's error.
    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let path = if path.starts_with("/session/") || path == "/session" {
            path.to_owned()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let body = (method != "GET" && method != "DELETE").then_some(body);
        let answer = self
            .raw(method, &format!("{}{path}", self.base), body)
            .await
            .unwrap_or_else(|| panic!("chromedriver did not answer {method} {path}"));
        let value = answer["value"].clone();
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            panic!("{method} {path}: {error}: {}", value["message"]);
        }
        value
    }

    /// Like [`command`](Self::command), but an error is `None` (for polling).
    async fn try_command(&self, method: &str, path: &str, body: Value) -> Option<Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let body = (method != "GET").then_some(body);
        let answer = self.raw(method, &url, body).await?;
        let value = answer["value"].clone();
        value.get("error").is_none().then_some(value)
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({"url": url})).await;
    }

    /// Sets the location's hash (a navigation of the page's own router, no reload).
    pub async fn go_hash(&self, hash: &str) {
        self.execute("location.hash = arguments[0]; return true;", json!([hash]))
            .await;
    }

    /// Runs `script` in the page (a function body; `arguments` are `args`).
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    async fn find_now(&self, css: &str) -> Option<Element> {
        let value = self
            .try_command(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        value[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let until = tokio::time::Instant::now() + super::DEADLINE;
        loop {
            if let Some(element) = self.find_now(css).await {
                return element;
            }
            if tokio::time::Instant::now() >= until {
                panic!(
                    "no element {css:?} appeared; the page shows: {}",
                    self.diagnosis().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        self.find_now(css).await.is_some()
    }

    /// Waits until the text of the first element matching `css` contains `wanted`;
    /// returns that text.
    pub async fn wait_text(&self, css: &str, wanted: &str) -> String {
        let until = tokio::time::Instant::now() + super::DEADLINE;
        let mut last = String::new();
        loop {
            if let Some(element) = self.find_now(css).await {
                if let Some(text) = self.try_text(&element).await {
                    if text.contains(wanted) {
                        return text;
                    }
                    last = text;
                }
            }
            if tokio::time::Instant::now() >= until {
                panic!(
                    "{css:?} never showed {wanted:?}; it last showed {last:?}; {}",
                    self.diagnosis().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    /// Clicks the first element matching `css`, once it exists (found again if the page
    /// redrew it in between).
    pub async fn click_on(&self, css: &str) {
        let until = tokio::time::Instant::now() + super::DEADLINE;
        loop {
            let element = self.find(css).await;
            let path = format!("/element/{}/click", element.0);
            if self.try_command("POST", &path, json!({})).await.is_some() {
                return;
            }
            if tokio::time::Instant::now() >= until {
                self.click(&element).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the field matching `css`, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command("POST", &format!("/element/{}/clear", element.0), json!({}))
            .await;
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            json!({"text": text}),
        )
        .await;
    }

    /// Accepts the `confirm()` dialog the page opened, once it is open.
    pub async fn accept_dialog(&self) {
        let until = tokio::time::Instant::now() + super::DEADLINE;
        while self
            .try_command("POST", "/alert/accept", json!({}))
            .await
            .is_none()
        {
            if tokio::time::Instant::now() >= until {
                panic!("no dialog opened");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Focuses the element matching `css` and presses Enter on it.
    pub async fn press_enter(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            json!({"text": "\u{E007}"}),
        )
        .await;
    }

    async fn try_text(&self, element: &Element) -> Option<String> {
        self.try_command("GET", &format!("/element/{}/text", element.0), json!({}))
            .await?
            .as_str()
            .map(str::to_owned)
    }

    /// What the page shows (the text of `<main>`).
    pub async fn page_text(&self) -> String {
        match self.find_now("main").await {
            Some(main) => self.try_text(&main).await.unwrap_or_default(),
            None => String::new(),
        }
    }

    /// The browser console's messages since the last look.
    pub async fn console(&self) -> Vec<String> {
        let log = self
            .try_command("POST", "/se/log", json!({"type": "browser"}))
            .await
            .unwrap_or_default();
        log.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What went wrong on the page: its URL, its text and the browser console's messages.
    pub async fn diagnosis(&self) -> String {
        let url = self
            .try_command("GET", "/url", json!({}))
            .await
            .unwrap_or_default();
        let log = self
            .try_command("POST", "/se/log", json!({"type": "browser"}))
            .await
            .unwrap_or_default();
        let source = self
            .try_command("GET", "/source", json!({}))
            .await
            .unwrap_or_default();
        format!(
            "url {url}; text {:?}; console {log}; source {source}",
            self.page_text().await
        )
    }

    /// Saves a PNG of the window as `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let encoded = self.command("GET", "/screenshot", json!({})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("base64");
        std::fs::create_dir_all(dir).expect("the screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}

impl Browser {
    /// Ends the session (Chromium quits), then the driver.
    pub async fn quit(self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.raw("DELETE", &url, None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
