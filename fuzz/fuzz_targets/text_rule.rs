//! `svc_kit::text::TextRule` on any string and any limits: what it accepts is trimmed, within
//! the limits, free of control characters, shows at least one visible character unless empty,
//! has no line separators in single-line fields, and checking it again gives the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use svc_kit::text::TextRule;

fuzz_target!(|data: &[u8]| {
    let [min_chars, max_chars, allow_newline, text @ ..] = data else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let rule = TextRule {
        field: "text",
        min_chars: usize::from(*min_chars),
        max_chars: usize::from(*max_chars),
        allow_newline: allow_newline % 2 == 1,
    };
    if let Ok(accepted) = rule.check(text) {
        let chars = accepted.chars().count();
        assert!(chars >= rule.min_chars && chars <= rule.max_chars);
        assert_eq!(accepted, accepted.trim());
        assert!(accepted.chars().all(|c| !c.is_control() || (c == '\n' && rule.allow_newline)));
        assert!(accepted.is_empty() || accepted.chars().any(svc_kit::text::is_visible));
        assert!(rule.allow_newline || !accepted.contains(['\u{2028}', '\u{2029}']));
        assert_eq!(rule.check(&accepted).as_deref(), Ok(accepted.as_str()));
    }
});
