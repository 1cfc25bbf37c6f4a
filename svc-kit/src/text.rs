//! Validation of the free text people type (display names, room names, chat): trimmed, a
//! bounded number of characters, and no control characters that could hide or reorder text.

use crate::status::Violation;

/// Rules for one text field.
#[derive(Debug, Clone, Copy)]
pub struct TextRule {
    /// The field name reported in violations.
    pub field: &'static str,
    /// Fewest characters after trimming.
    pub min_chars: usize,
    /// Most characters after trimming.
    pub max_chars: usize,
    /// Whether `\n` is allowed (chat and descriptions, not names).
    pub allow_newline: bool,
}

impl TextRule {
    /// Trims `value` and checks it, returning the trimmed text.
    ///
    /// # Errors
    /// One violation naming the field when the text is too short, too long or has a control
    /// character.
    pub fn check(&self, value: &str) -> Result<String, Violation> {
        let trimmed = value.trim();
        let chars = trimmed.chars().count();
        if chars < self.min_chars {
            let description = if self.min_chars == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must have at least {} characters", self.min_chars)
            };
            return Err(Violation::new(self.field, description));
        }
        if chars > self.max_chars {
            return Err(Violation::new(self.field, format!("must have at most {} characters", self.max_chars)));
        }
        if trimmed.chars().any(|c| is_forbidden(c, self.allow_newline)) {
            return Err(Violation::new(self.field, "must not contain control characters"));
        }
        if !trimmed.is_empty() && !trimmed.chars().any(is_visible) {
            // Zero-width spaces and fillers would make a blank name, room or message that looks
            // like nothing in every list.
            return Err(Violation::new(self.field, "must contain at least one visible character"));
        }
        Ok(trimmed.to_owned())
    }
}

/// Whether `c` shows as something: not whitespace, and not one of the characters that render
/// as nothing (Unicode's default-ignorable code points and the blank fillers of Hangul and
/// Braille).
#[must_use]
pub fn is_visible(c: char) -> bool {
    !c.is_whitespace()
        && !c.is_control()
        && !matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Control characters (C0, DEL, C1) and the Unicode format controls that reorder or hide text
/// (bidi overrides and isolates, zero-width joiners are allowed for emoji); line breaks in
/// single-line fields, including Unicode's line and paragraph separators.
fn is_forbidden(c: char, allow_newline: bool) -> bool {
    if c == '\n' {
        return !allow_newline;
    }
    if matches!(c, '\u{2028}' | '\u{2029}') {
        return !allow_newline;
    }
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: TextRule = TextRule { field: "display_name", min_chars: 1, max_chars: 4, allow_newline: false };
    const CHAT: TextRule = TextRule { field: "text", min_chars: 1, max_chars: 10, allow_newline: true };

    #[test]
    fn trims_and_accepts_ordinary_text() {
        assert_eq!(NAME.check("  小窝 ").as_deref(), Ok("小窝"));
        assert_eq!(CHAT.check("a\nb").as_deref(), Ok("a\nb"));
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(NAME.check("小窝小窝").is_ok());
        assert!(NAME.check("小窝小窝小").is_err());
    }

    #[test]
    fn rejects_empty_control_and_bidi() {
        for bad in ["", "   ", "a\u{0}b", "a\nb", "a\u{7}", "\u{202E}ab", "a\u{85}b"] {
            assert_eq!(NAME.check(bad).map_err(|v| v.field), Err("display_name".to_owned()), "{bad:?}");
        }
        assert!(CHAT.check("a\rb").is_err());
        assert!(CHAT.check("tab\there").is_err());
    }

    /// The outside walk's finds: all of these were accepted.
    #[test]
    fn rejects_text_with_nothing_visible_and_separators_in_single_lines() {
        for bad in ["\u{200b}\u{200b}", "\u{200b}", "\u{3164}", "\u{2800}\u{2060}", "\u{feff}", "\u{ad}\u{fe0f}"] {
            let violation = NAME.check(bad).unwrap_err();
            assert_eq!(violation.field, "display_name", "{bad:?}");
        }
        assert!(CHAT.check("\u{200b}\u{200b}\u{200b}").is_err());
        assert!(NAME.check("a\u{2028}b").is_err());
        assert!(NAME.check("a\u{2029}b").is_err());
        // Visible text with invisible parts is fine: emoji sequences join with U+200D.
        assert_eq!(NAME.check("👩\u{200d}💻").as_deref(), Ok("👩\u{200d}💻"));
        assert!(NAME.check("a\u{200b}").is_ok());
        // An optional field may be empty, but not blank-looking.
        let description = TextRule { field: "description", min_chars: 0, max_chars: 10, allow_newline: true };
        assert_eq!(description.check("  ").as_deref(), Ok(""));
        assert!(description.check("\u{200b}").is_err());
    }
}
