//! Secrets stay secret, against real `taskloom` processes: API-key
//! configuration fails closed, hooks follow no redirects and their error
//! bodies are truncated and redacted, outbound calls to link-local and
//! metadata addresses are refused (checked on the resolved address), and
//! provider API keys and hook secret headers are encrypted at rest in a
//! database file only its owner can read.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `taskloom serve` with these arguments and environment until it
/// exits on its own (standard input is closed, so a server that does start
/// stops again at once); returns its exit status and standard error.
fn serve_until_exit(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("taskloom.db");
    let port = taskloom_testkit::free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskloom"));
    command
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database.to_str().unwrap()])
        .arg("--exit-with-stdin")
        .args(args)
        .env_remove("TASKLOOM_API_KEYS")
        .env_remove("TASKLOOM_API_KEYS_FILE")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn api_key_sources_without_keys_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.keys");
    std::fs::write(&empty, "").unwrap();
    let comments = dir.path().join("comments.keys");
    std::fs::write(&comments, "# production keys\n\n   \n# (none yet)\n").unwrap();

    let cases: Vec<(Vec<&str>, Vec<(&str, &str)>, &str)> = vec![
        (
            vec!["--api-keys-file", empty.to_str().unwrap()],
            vec![],
            "--api-keys-file",
        ),
        (
            vec!["--api-keys-file", comments.to_str().unwrap()],
            vec![],
            "--api-keys-file",
        ),
        (
            vec![],
            vec![("TASKLOOM_API_KEYS_FILE", comments.to_str().unwrap())],
            "--api-keys-file",
        ),
        (vec![], vec![("TASKLOOM_API_KEYS", ",, ,")], "TASKLOOM_API_KEYS"),
        (vec![], vec![("TASKLOOM_API_KEYS", " ")], "TASKLOOM_API_KEYS"),
    ];
    for (args, env, named) in cases {
        let (status, stderr) = serve_until_exit(&args, &env);
        assert!(
            !status.success(),
            "{args:?} {env:?} must not start: {status:?}\n{stderr}"
        );
        assert!(
            stderr.contains(named) && stderr.contains("no API key"),
            "{args:?} {env:?}: the message names the source: {stderr}"
        );
    }

    // A file with a key next to comments starts (and stops with stdin).
    let good = dir.path().join("good.keys");
    std::fs::write(&good, "# ops\nkey-one\n").unwrap();
    let (status, stderr) = serve_until_exit(&["--api-keys-file", good.to_str().unwrap()], &[]);
    assert!(status.success(), "{stderr}");
    // No source at all is local development mode: it starts.
    let (status, stderr) = serve_until_exit(&[], &[("TASKLOOM_API_KEYS", "")]);
    assert!(status.success(), "{stderr}");
}
