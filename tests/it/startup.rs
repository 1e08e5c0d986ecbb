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
        (
            &["--allow-private-networks", "10.0.0.0/99"],
            "--allow-private-networks",
        ),
        (&["--listen", "0.0.0.0:0"], "--api-key is required"),
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
