//! monitor-svc's alert rules file (TOML) and the duration syntax it shares with every config
//! flag: any text is a rule list or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_svc::rules::{RuleContext, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let context = RuleContext::new(
        &["xiaowo_auth_failures_total".to_owned()],
        &["xiaowo_rooms_active".to_owned()],
        ["session".to_owned(), "room".to_owned()],
    );
    if let Ok(rules) = parse(text, &context) {
        for rule in rules {
            assert!(!rule.name.is_empty() && rule.threshold.is_finite());
        }
    }
    let _ = svc_kit::server::parse_duration(text);
});
