//! An operator's session with the inspector, in headless Chromium: a wrong key shows a
//! refusal and no data; a webhook created on the page points at a receiver that fails; the
//! failed delivery shows its attempt log; once the receiver heals, Retry succeeds on the
//! page; the webhook is paused and resumed, disabled and enabled, its secret rotated after a
//! confirmation; a test event goes to it alone; a link followed with Enter alone; the
//! list paged by the API's cursor; hostile names and payloads show as text and run nothing;
//! unknown ids say "not found"; no CSP refusal in the console.

use std::path::PathBuf;

use serde_json::json;

use super::webdriver::Browser;
use super::{DEADLINE, KEY};
use crate::daemon::start_with_key;
use crate::fixtures::{database, wait_for_status};
use crate::support::Receiver;

/// Where the screenshots go: `target/ui-screenshots/` of this package.
fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ui-screenshots")
}

/// Set by any script that hostile data manages to run.
const PWNED: &str = "return [window.__pwned === undefined, document.title];";

const HOSTILE_NAME: &str = "<img src=x onerror=\"window.__pwned='name'\">billing";
const HOSTILE_DATA: &str = "<script>window.__pwned='payload'</script>";

#[tokio::test]
async fn an_operator_finds_a_failed_delivery_retries_it_and_pauses_its_webhook() {
    // First, so that a machine without Chromium fails at once, saying what to install.
    let browser = Browser::start(1280, 900).await;
    let (uri, name, db) = database("ui_story").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let (daemon, api) = start_with_key(&uri, &name, KEY, |c| c.retry_max_attempts = 2).await;
    let ui = format!("http://{}/ui/", daemon.listen);
    let shots = screenshots();

    // A wrong key: a clear refusal, no data.
    browser.goto(&ui).await;
    browser.fill("#api-key", "not-the-key").await;
    browser.click_on("#key-submit").await;
    let refusal = browser.wait_text("#key-feedback", "refused").await;
    assert!(refusal.contains("401"), "{refusal}");
    assert!(!browser.exists("table").await);

    // The right key, then a webhook created on the page, with a hostile name.
    browser.fill("#api-key", KEY).await;
    browser.click_on("#key-submit").await;
    browser.wait_text("main h1", "Webhooks").await;
    browser.wait_text("main", "No webhooks yet").await;
    browser.fill("#new-url", &receiver.url).await;
    browser.fill("#new-types", "*").await;
    browser.fill("#new-name", HOSTILE_NAME).await;
    browser
        .click_on("#create-webhook button[type=submit]")
        .await;
    browser.wait_text("#create-webhook", "shown only now").await;
    let secret = browser.wait_text("#new-secret", "whsec_").await;
    let listed = api.get("/v1/webhooks").await;
    let webhook_id = listed.body["results"][0]["webhook_id"]
        .as_str()
        .expect("the webhook created on the page")
        .to_owned();
    assert!(secret.starts_with("whsec_"));

    // An event with a hostile payload fails at the receiver, twice.
    let published = api
        .post(
            "/v1/events",
            json!({"event_type": "object.created", "event_id": "evt_ui_1",
                   "data": {"note": HOSTILE_DATA, "object_id": "obj_1"}}),
        )
        .await;
    assert_eq!(published.status, 202, "{}", published.body);
    let delivery_id = format!("evt_ui_1:{webhook_id}");
    wait_for_status(&db, &delivery_id, "failed").await;

    // The owner keeps the hour's counts every two seconds; the list charts them.
    let stats = format!("/v1/webhooks/{webhook_id}/stats");
    crate::support::eventually(DEADLINE, "the hour's counts are kept", || async {
        api.get(&stats).await.body["attempts"] == 2
    })
    .await;

    // The list (sorted by name): the hostile name as text, the webhook failing.
    browser.go_hash("#/webhooks?sort=name:asc").await;
    browser.wait_text("#webhooks-table", "billing").await;
    browser.wait_text("#webhooks-table", "HTTP 500").await;
    browser.wait_text("#webhooks-table", "0 %").await;
    let shown = browser.wait_text("#webhooks-table", "<img src=x").await;
    assert!(shown.contains(HOSTILE_NAME), "{shown}");
    browser.screenshot(&shots, "webhooks").await;

    // Deliveries, filtered to the failed ones; then the delivery and its attempts.
    browser.go_hash("#/deliveries?status=failed").await;
    browser.wait_text("main table", "evt_ui_1").await;
    browser.screenshot(&shots, "deliveries").await;
    browser.click_on("main table a.strong").await;
    browser.wait_text("#delivery-status", "failed").await;
    let attempts = browser.wait_text("#attempts", "500").await;
    assert_eq!(attempts.matches("500").count(), 2, "{attempts}");
    let payload = browser.wait_text("#payload", "evt_ui_1").await;
    assert!(
        payload.contains(HOSTILE_DATA),
        "the payload as text: {payload}"
    );
    browser.screenshot(&shots, "delivery-failed").await;

    // The receiver heals; Retry on the page; the result appears without a reload.
    receiver.respond_with(200);
    browser
        .execute("window.__sameDocument = true; return true;", json!([]))
        .await;
    browser.click_on("#retry").await;
    browser.wait_text("#retry-result", "Retry succeeded").await;
    browser.wait_text("#delivery-status", "succeeded").await;
    browser.wait_text("#attempts", "200").await;
    let same = browser
        .execute("return window.__sameDocument === true;", json!([]))
        .await;
    assert_eq!(same, json!(true), "the page was reloaded");
    wait_for_status(&db, &delivery_id, "succeeded").await;
    // Tall enough for the payload too.
    browser.resize(1280, 1400).await;
    browser.screenshot(&shots, "delivery").await;
    browser.resize(1280, 900).await;

    // The webhook: pause, resume, a test event for it alone.
    browser.go_hash(&format!("#/webhooks/{webhook_id}")).await;
    browser.click_on("#pause").await;
    browser.find("#resume").await;
    browser.wait_text("main h1", "paused").await;
    assert_eq!(
        api.get(&format!("/v1/webhooks/{webhook_id}")).await.body["paused"],
        true
    );
    browser.click_on("#resume").await;
    browser.find("#pause").await;
    assert_eq!(
        api.get(&format!("/v1/webhooks/{webhook_id}")).await.body["paused"],
        false
    );
    let before = receiver.count();
    browser.click_on("#send-test").await;
    browser.wait_text("#action-result", "queued").await;
    let requests = receiver.wait_for(before + 1, DEADLINE).await;
    let test = requests.last().unwrap().json();
    assert_eq!(test["event_type"], "webhook.test");
    assert_eq!(test["data"]["webhook_id"], webhook_id.as_str());
    browser.wait_text("#webhook-deliveries", "evt_ui_1").await;
    // Its hour in five-minute columns (the kept health is written every two seconds).
    browser.wait_text("#webhook-rate", "attempts)").await;
    assert!(browser.exists("#webhook-rate svg rect.bar-ok").await);
    browser.screenshot(&shots, "webhook").await;

    // Disable and enable again; rotate the secret after confirming.
    browser.click_on("#disable").await;
    browser.find("#enable").await;
    browser.wait_text("main h1", "disabled").await;
    assert_eq!(
        api.get(&format!("/v1/webhooks/{webhook_id}")).await.body["enabled"],
        false
    );
    browser.click_on("#enable").await;
    browser.find("#disable").await;
    assert_eq!(
        api.get(&format!("/v1/webhooks/{webhook_id}")).await.body["enabled"],
        true
    );
    browser.click_on("#rotate").await;
    browser.accept_dialog().await;
    let rotated = browser.wait_text("#action-result", "whsec_").await;
    assert!(!rotated.contains(&secret), "a new secret: {rotated}");

    // The keyboard alone: Enter on a focused link follows it.
    browser.go_hash("#/deliveries?status=succeeded").await;
    browser.wait_text("main table", "evt_ui_1").await;
    browser.press_enter("main table a.strong").await;
    browser.wait_text("main h1", "Delivery").await;
    browser.wait_text("#delivery-status", "succeeded").await;

    // The catalog and the cluster pages.
    browser.go_hash("#/events").await;
    browser.wait_text("main", "object.created").await;
    browser.screenshot(&shots, "events").await;
    browser.go_hash("#/cluster").await;
    browser.wait_text("main h1", "Cluster").await;
    browser.wait_text("main", "live").await;
    browser.screenshot(&shots, "cluster").await;

    // Unknown ids in the URL.
    browser.go_hash("#/webhooks/wh_0000000000000000").await;
    browser.wait_text("main h1", "Webhook not found").await;
    browser.go_hash("#/deliveries/evt_nope%3Awh_nope").await;
    browser.wait_text("main h1", "Delivery not found").await;

    // At phone width the list still reads (one card per webhook).
    browser.resize(390, 844).await;
    browser.go_hash("#/webhooks").await;
    browser.wait_text("#webhooks-table", "billing").await;
    browser.screenshot(&shots, "webhooks-phone").await;

    // More webhooks than a page holds: the API's cursor pages through them.
    browser.resize(1280, 900).await;
    for i in 0..25 {
        let created = api
            .post(
                "/v1/webhooks",
                json!({"url": receiver.url_with_path(&format!("/bulk/{i}")), "event_types": ["object.deleted"], "name": format!("bulk-{i:02}")}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    browser.go_hash("#/webhooks?limit=25").await;
    browser.find("#next-page").await;
    let rows = "return document.querySelectorAll('#webhooks-table tbody tr').length;";
    assert_eq!(browser.execute(rows, json!([])).await, json!(25));
    browser.click_on("#next-page").await;
    browser.wait_text("main .pager", "Last page").await;
    assert_eq!(browser.execute(rows, json!([])).await, json!(1));

    // Nothing hostile ran, on any page.
    let checked = browser.execute(PWNED, json!([])).await;
    assert_eq!(checked[0], true, "a hostile string ran as code: {checked}");

    // The page never needed anything the Content-Security-Policy forbids.
    let console = browser.console().await;
    assert!(
        !console
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "{console:?}"
    );

    browser.quit().await;
    daemon.stop().await.unwrap();
}
