//! Bad configuration and an unreachable database at start: one line, non-zero exit.

use std::process::Command;

fn herald(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .args(args)
        .env_remove("HERALD_MONGODB_URI")
        .output()
        .expect("run herald");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_are_refused_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--retry-max-attempts", "0"], "--retry-max-attempts"),
        (&["--secret-key", "not-hex"], "--secret-key"),
        (&["--max-held-per-endpoint", "0"], "--max-held-per-endpoint"),
        (
            &["--allow-private-networks", "10.0.0.0/99"],
            "--allow-private-networks",
        ),
        (&["--listen", "0.0.0.0:0"], "--api-key is required"),
        (
            &["--lease-ttl", "500ms"],
            "--lease-ttl must be at least 1000 ms",
        ),
        (
            &["--lease-ttl", "ten seconds"],
            "--lease-ttl: \"ten seconds\" is not a duration",
        ),
        (&["--member-id", "a b"], "--member-id"),
        (&["--max-events-in-flight", "0"], "--max-events-in-flight"),
        (
            &["--config", "/nonexistent/herald.toml"],
            "cannot read config file",
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = herald(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {stderr}"
        );
    }
}

#[test]
fn an_unreachable_database_is_a_one_line_error() {
    // Nothing listens on port 1.
    let (code, stderr) = herald(&[
        "--mongodb-uri",
        "mongodb://127.0.0.1:1/?directConnection=true&serverSelectionTimeoutMS=500",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    // Log lines may precede it; the error itself is the one last line.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("herald: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("MongoDB unreachable"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().last(), Some(errors[0]));
}

#[tokio::test]
async fn a_taken_listen_address_is_a_one_line_error() {
    let (uri, name, _db) = crate::fixtures::database("startup_taken").await;
    // Held by the test for as long as herald tries to bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut config = crate::daemon::test_config(&uri, &name, crate::support::test_ca_pem_path());
    config.listen = addr;
    let error = match crate::daemon::InProcess::try_start(config).await {
        Ok(_) => panic!("herald started on a taken address"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.starts_with(&format!("cannot listen on {addr}: ")),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");
    drop(taken);
}

#[tokio::test]
async fn port_0_binds_a_port_of_the_systems_choosing_and_reports_it() {
    let (uri, name, _db) = crate::fixtures::database("startup_port0").await;
    let config = crate::daemon::test_config(&uri, &name, crate::support::test_ca_pem_path());
    assert_eq!(config.listen.port(), 0);
    // In process: the address comes back from `run_reporting`.
    let daemon = crate::daemon::InProcess::start(config.clone()).await;
    assert_ne!(daemon.listen.port(), 0);
    let status = crate::daemon::http_get_status(&format!("http://{}/healthz", daemon.listen)).await;
    assert_eq!(status, Some(200));
    // As a child: from its `listening` log line.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = crate::daemon::ChildDaemon::spawn(&config, log.path());
    child.wait_ready().await;
    assert_ne!(child.listen().port(), 0);
    assert_ne!(child.listen(), daemon.listen);
    assert_eq!(child.terminate(), Some(0), "{}", child.log_text());
    daemon.stop().await.unwrap();
}
