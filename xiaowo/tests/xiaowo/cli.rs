//! The command line as an operator meets it: help in groups with a short `-h`, a one-line
//! backup summary (`--json` for the manifest), `verify-backups` finding what `backup` wrote,
//! and the README's service list matching the binary's.

use crate::helpers::{grpcurl, start_up, xiaowo};

fn run(args: &[&str]) -> String {
    let output = xiaowo().args(args).output().unwrap();
    assert!(output.status.success(), "xiaowo {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The group headings of a help page, in order.
fn headings(help: &str) -> Vec<&str> {
    help.lines()
        .filter(|line| !line.starts_with(' ') && line.ends_with(':'))
        .map(|line| line.trim_end_matches(':'))
        .collect()
}

#[test]
fn help_is_grouped_and_dash_h_fits_a_screen() {
    let groups = [
        "Network",
        "Storage",
        "Security",
        "Limits",
        "Sessions",
        "Rooms",
        "Sync",
        "Chat",
        "Media",
        "Monitoring",
        "Backups",
        "Logs",
    ];
    let long = run(&["up", "--help"]);
    assert_eq!(headings(&long), [&["Options"][..], &groups].concat(), "{long}");
    // Every setting sits in a named group: none is left under "Options" but help itself.
    let options = long.split("\nNetwork:").next().unwrap();
    assert_eq!(options.matches("\n      --").count() + options.matches("\n  -").count(), 1, "{options}");
    assert!(long.matches("\n      --").count() > 90, "every setting in --help");

    let short = run(&["up", "-h"]);
    assert!(short.lines().count() <= 50, "{} lines:\n{short}", short.lines().count());
    for flag in ["--listen", "--data-dir", "--admin-token-file", "--access-log", "--backup-dir"] {
        assert!(short.contains(flag), "{flag} missing from -h:\n{short}");
    }
    assert!(!short.contains("--sync-presence-expiry"), "-h keeps to the first settings");
    assert!(short.contains("by group: --help"), "{short}");

    let serve = run(&["serve", "-h"]);
    assert!(serve.contains("--room-listen") && serve.contains("--session-url"), "{serve}");
    let backup = run(&["backup", "--help"]);
    assert!(!backup.contains("--backup-full-interval"), "schedule settings mean nothing to a one-off backup");
    assert!(!backup.contains("--listen"), "{backup}");
}

#[tokio::test]
async fn backup_prints_one_line_and_verify_finds_it_in_the_same_place() {
    let up = start_up(&[], "cli-admin", &[("XIAOWO_BACKUP_FULL_INTERVAL", "0s")]);
    let data = up.data.path().to_str().unwrap();
    let line = run(&["backup", "--data-dir", data]);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with("full backup ") && line.contains("chat, media, monitor, room, session, sync"), "{line}");
    assert!(line.contains(&format!("{data}/backups/")), "{line}");

    let json = run(&["backup", "--data-dir", data, "--kind", "incremental", "--json"]);
    let manifest: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(manifest["kind"], "incremental", "{json}");

    // No --backup-dir: the data directory's `backups`, where `backup` wrote them.
    let verified = run(&["verify-backups", "--data-dir", data]);
    assert!(verified.ends_with("2 backups verified\n"), "{verified}");
}

/// The README's `grpcurl … list` block is what the binary answers.
#[test]
fn the_readme_lists_the_services_the_binary_serves() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let block = readme.split("$ grpcurl -plaintext 127.0.0.1:8080 list\n").nth(1).expect("the list example");
    let documented: Vec<&str> = block.lines().take_while(|line| !line.is_empty()).collect();
    let up = start_up(&[], "readme-admin", &[]);
    let served = grpcurl(&["-plaintext", &up.addr, "list"]);
    assert_eq!(documented, served.lines().collect::<Vec<_>>(), "README.md's list is out of date");
}
