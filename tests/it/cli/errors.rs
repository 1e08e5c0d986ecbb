//! Failures: one line on stderr naming the problem, and a non-zero exit.

use super::{herald, setup, write};
use crate::daemon::free_port;

#[tokio::test]
async fn failures_are_one_line_on_stderr_with_a_non_zero_exit() {
    let s = setup("cli_errors").await;
    let dir = tempfile::tempdir().unwrap();

    // Bad --data JSON: refused before anything is sent.
    let bad_data = s
        .cli(&[
            "events",
            "publish",
            "--type",
            "object.created",
            "--data",
            "{nope",
        ])
        .await
        .failed();
    assert!(bad_data.contains("--data is not valid JSON"), "{bad_data}");

    // Nothing listening at --url: said so.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let refused = herald(&["webhooks", "list", "--url", &nowhere])
        .await
        .failed();
    assert!(
        refused.contains("cannot connect") && refused.contains(&nowhere),
        "{refused}"
    );

    // A wrong key: the API's 401, surfaced.
    let unauthorized = herald(&["webhooks", "list", "--url", &s.url, "--api-key", "wrong"])
        .await
        .failed();
    assert!(
        unauthorized.contains("401") && unauthorized.contains("API key"),
        "{unauthorized}"
    );
    let no_key = herald(&["deliveries", "list", "--url", &s.url])
        .await
        .failed();
    assert!(no_key.contains("401"), "{no_key}");

    // The API's validation message names the field.
    let plaintext = s
        .cli(&[
            "webhooks",
            "create",
            "--url",
            "http://hooks.example.com/h",
            "--event-type",
            "object.created",
        ])
        .await
        .failed();
    assert!(
        plaintext.contains("url") && plaintext.contains("HTTPS"),
        "{plaintext}"
    );
    let unknown_type = s
        .cli(&[
            "events",
            "publish",
            "--type",
            "no.such.type",
            "--data",
            "{}",
        ])
        .await
        .failed();
    assert!(
        unknown_type.contains("event_type") && unknown_type.contains("422"),
        "{unknown_type}"
    );

    // Invalid apply files: nothing sent, one line naming the problem.
    let cases = [
        ("[[webhooks]\nname = \"a\"\n", "line 1"),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\nsecret = \"x\"\n",
            "unknown field `secret`",
        ),
        ("[[webhooks]]\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n", "missing field `name`"),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = [\"*\"]\n",
            "already used",
        ),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"https://h.example.com\"\nevent_types = [\"object.craeted\"]\n",
            "not in the daemon's event catalog",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        write(&file, text);
        let error = s
            .cli(&["apply", "-f", file.to_str().unwrap()])
            .await
            .failed();
        assert!(error.contains(expected), "{text:?}: {error}");
        assert!(error.contains(&format!("bad{i}.toml")), "{error}");
    }
    let missing = s
        .cli(&["apply", "-f", "/nonexistent/webhooks.toml"])
        .await
        .failed();
    assert!(missing.contains("cannot read"), "{missing}");
    assert!(
        s.webhooks().await.is_empty(),
        "a bad file changed something"
    );

    // Usage errors come from clap (exit 2), not one of ours, but still fail.
    let usage = herald(&["webhooks", "create", "--event-type", "x"]).await;
    assert_eq!(usage.code, Some(2));
    s.daemon.stop().await.unwrap();
}
