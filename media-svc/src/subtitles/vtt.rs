//! WebVTT read back in: only cues pass (the header text, notes, `STYLE` blocks — CSS, which
//! could fetch from anywhere — and regions are dropped), their settings checked one by one and
//! their text tokenised as WebVTT does: the kept tags with their classes and annotations,
//! timestamp tags dropped, character references decoded. A tag WebVTT does not know is text.

use super::cue::{Cue, Read, Settings, Tag, TagKind, TimestampStyle, Token, blocks, decode_entities, parse_timing};

const STYLE: TimestampStyle = TimestampStyle { separator: '.', fraction_digits: 3, hours_optional: true };

/// Whether a block is not a cue: the header, a note, a style sheet or a region.
fn skipped_block(first_line: &str) -> bool {
    ["WEBVTT", "NOTE", "STYLE", "REGION"].iter().any(|word| {
        first_line.strip_prefix(word).is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
    })
}

/// Reads WebVTT text (its `WEBVTT` line already recognised).
#[must_use]
pub fn read(text: &str) -> Read {
    let lines: Vec<&str> = text.lines().collect();
    let mut read = Read::default();
    for block in blocks(&lines, skipped_block) {
        let Some(timing) = parse_timing(block.timing, STYLE) else {
            read.skipped += 1;
            continue;
        };
        read.push(
            Cue {
                start_ms: timing.start_ms,
                end_ms: timing.end_ms,
                settings: Settings::parse(timing.rest),
                text: tokens(&block.text.join("\n")),
            },
            timing.repaired,
        );
    }
    read
}

/// WebVTT cue text as tokens.
#[must_use]
pub fn tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        plain.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find('>').unwrap_or(rest.len());
        match tag(&rest[1..end]) {
            Some(token) => {
                if !plain.is_empty() {
                    tokens.push(Token::Text(decode_entities(&plain)));
                    plain.clear();
                }
                tokens.extend(token);
                rest = rest.get(end + 1..).unwrap_or_default();
            }
            None => {
                plain.push('<');
                rest = &rest[1..];
            }
        }
    }
    plain.push_str(rest);
    if !plain.is_empty() {
        tokens.push(Token::Text(decode_entities(&plain)));
    }
    tokens
}

/// The token a tag's inside (between `<` and `>`) stands for: `Some(None)` for a timestamp tag
/// (dropped), `None` for a tag WebVTT does not have (left as text).
fn tag(inside: &str) -> Option<Option<Token>> {
    if let Some(name) = inside.strip_prefix('/') {
        let name = name.split(['.', ' ', '\t', '\n']).next().unwrap_or_default();
        return TagKind::from_name(name).map(|kind| Some(Token::Close(kind)));
    }
    if inside.starts_with(|c: char| c.is_ascii_digit()) {
        return inside.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b'.').then_some(None);
    }
    let (head, annotation) = match inside.find([' ', '\t', '\n']) {
        Some(at) => (&inside[..at], inside[at..].trim()),
        None => (inside, ""),
    };
    let mut parts = head.split('.');
    let kind = TagKind::from_name(parts.next().unwrap_or_default())?;
    let classes = parts.filter(|class| !class.is_empty()).map(str::to_owned).collect();
    Some(Some(Token::Open(Tag { kind, classes, annotation: decode_entities(annotation) })))
}

#[cfg(test)]
mod tests {
    use super::super::cue::{LineValue, render_text};
    use super::*;

    #[test]
    fn cues_pass_everything_else_goes() {
        let read = read(
            "WEBVTT - a title\nKind: captions\n\nSTYLE\n::cue { background: url(https://evil.example/x) }\n\n\
             NOTE a comment\n\nREGION\nid:r1\n\nintro\n00:01.000 --> 00:04.000 line:0 region:r1\n\
             <v.loud Mei>你好</v> <c.yellow>there</c> <00:02.000><ruby>漢<rt>kan</rt></ruby>\n\n\
             00:00:05.000 --> 00:00:06.000 align:bogus\n<script>alert(1)</script> &amp;&lt;b&gt; <b onclick=x>b</b>\n",
        );
        assert_eq!((read.cues.len(), read.repaired, read.skipped), (2, 0, 0));
        assert_eq!(read.cues[0].start_ms, 1000);
        assert_eq!(read.cues[0].settings.line, Some((LineValue::Number(0), None)));
        assert_eq!(
            render_text(&read.cues[0].text).unwrap(),
            "<v.loud Mei>你好</v> <c.yellow>there</c> <ruby>漢<rt>kan</rt></ruby>"
        );
        assert_eq!(read.cues[1].settings, Settings::default());
        assert_eq!(
            render_text(&read.cues[1].text).unwrap(),
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp;&lt;b&gt; <b>b</b>",
            "unknown tags are text, attributes of kept ones dropped"
        );
    }

    #[test]
    fn repairs_and_skips() {
        let read =
            read("WEBVTT\n\n00:01,000 --> 00:02.000\na\n\n00:03.000 --> 00:02.000\nb\n\n00:04.000 --> 00:05.000\n\n");
        assert_eq!((read.cues.len(), read.repaired, read.skipped), (1, 1, 2));
    }
}
