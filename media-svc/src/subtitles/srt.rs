//! SubRip (`.srt`): numbered blocks of a timing line (`00:00:01,000 --> 00:00:04,000`) and text
//! lines. Its markup is HTML-like: `<i>`, `<b>`, `<u>` are kept (any case), `<font …>` is
//! dropped with its attributes, and an ASS-style `{\an8}` at the start places the cue (top,
//! middle or bottom; left, centre or right). Any other tag is text.

use super::cue::{Cue, Read, Settings, Tag, TagKind, TimestampStyle, Token, blocks, decode_entities, parse_timing};

const STYLE: TimestampStyle = TimestampStyle { separator: ',', fraction_digits: 3, hours_optional: false };

/// Reads SubRip text.
#[must_use]
pub fn read(text: &str) -> Read {
    let lines: Vec<&str> = text.lines().collect();
    let mut read = Read::default();
    for block in blocks(&lines, |_| false) {
        let Some(timing) = parse_timing(block.timing, STYLE) else {
            read.skipped += 1;
            continue;
        };
        let (alignment, tokens) = markup(&block.text.join("\n"));
        read.push(
            Cue {
                start_ms: timing.start_ms,
                end_ms: timing.end_ms,
                settings: alignment.map(Settings::from_numpad).unwrap_or_default(),
                text: tokens,
            },
            timing.repaired,
        );
    }
    read
}

/// The cue's placement (from `{\anN}` or `{\aN}`) and its text as tokens.
fn markup(text: &str) -> (Option<u8>, Vec<Token>) {
    let mut alignment = None;
    let mut tokens = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(['<', '{']) {
        plain.push_str(&rest[..at]);
        rest = &rest[at..];
        if rest.starts_with("{\\") {
            if let Some(end) = rest.find('}') {
                alignment = alignment.or_else(|| super::ass::override_alignment(&rest[1..end]));
                rest = &rest[end + 1..];
                continue;
            }
        } else if rest.starts_with('<')
            && let Some(end) = rest.find('>')
            && let Some(token) = html_tag(&rest[1..end])
        {
            flush(&mut plain, &mut tokens);
            if let Some(token) = token {
                tokens.push(token);
            }
            rest = &rest[end + 1..];
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        plain.push(c);
        rest = &rest[c.len_utf8()..];
    }
    plain.push_str(rest);
    flush(&mut plain, &mut tokens);
    (alignment, tokens)
}

fn flush(plain: &mut String, tokens: &mut Vec<Token>) {
    if !plain.is_empty() {
        tokens.push(Token::Text(decode_entities(plain)));
        plain.clear();
    }
}

/// `Some(Some(token))` for a kept tag, `Some(None)` for a dropped one (`font`), `None` when the
/// tag is not SubRip markup (it stays as text).
fn html_tag(inside: &str) -> Option<Option<Token>> {
    let inside = inside.trim();
    let (closing, name) = match inside.strip_prefix('/') {
        Some(name) => (true, name.trim()),
        None => (false, inside),
    };
    let name_end = name.find(|c: char| c.is_whitespace()).unwrap_or(name.len());
    let (name, attributes) = (name[..name_end].to_ascii_lowercase(), name[name_end..].trim());
    let kind = match name.as_str() {
        "i" => TagKind::Italic,
        "b" => TagKind::Bold,
        "u" => TagKind::Underline,
        "font" => return Some(None),
        _ => return None,
    };
    if !attributes.is_empty() {
        // `<b onclick=…>` is not SubRip's markup: kept as the text it is.
        return None;
    }
    Some(Some(if closing { Token::Close(kind) } else { Token::Open(Tag::plain(kind)) }))
}

#[cfg(test)]
mod tests {
    use super::super::cue::{Align, LineValue, render_text};
    use super::*;

    #[test]
    fn cues_markup_and_placement() {
        let read = read(
            "1\r\n00:00:01,000 --> 00:00:04,000\r\n<i>Hello</i> <B>world</B> <font color=\"#ff0000\">red</font>\r\n\r\n\
             2\r\n00:00:05,000 --> 00:00:06,000\r\n{\\an8}On top &amp; <script>x</script>\r\n",
        );
        assert_eq!((read.cues.len(), read.repaired, read.skipped), (2, 0, 0));
        assert_eq!(render_text(&read.cues[0].text).unwrap(), "<i>Hello</i> <b>world</b> red");
        assert_eq!(render_text(&read.cues[1].text).unwrap(), "On top &amp; &lt;script&gt;x&lt;/script&gt;");
        assert_eq!(read.cues[1].settings.line, Some((LineValue::Number(0), None)));
        let left = read_one("{\\an1}left");
        assert_eq!(left.settings.align, Some(Align::Left));
    }

    fn read_one(text: &str) -> Cue {
        read(&format!("1\n00:00:01,000 --> 00:00:02,000\n{text}\n")).cues.remove(0)
    }

    #[test]
    fn malformed_timestamps_repaired_or_skipped() {
        let read = read(
            "1\n00:00:01.000 --> 00:00:02,000\nrepaired separator\n\n\
             2\n0:00:03,5 -> 00:00:04,000\nrepaired digits and arrow\n\n\
             3\n00:00:09,000 --> 00:00:08,000\nends before it starts\n\n\
             4\n00:00:xx,000 --> 00:00:10,000\nunreadable\n\n\
             5\n00:00:11,000 --> 00:00:12,000\n\n\
             6\n00:00:13,000 --> 00:00:14,000\n<b onmouseover=alert(1)>fine</b>\n",
        );
        assert_eq!(read.cues.len(), 3);
        assert_eq!(read.repaired, 2);
        assert_eq!(read.skipped, 3, "two bad timings and one cue without text");
        assert_eq!(read.cues[1].start_ms, 3500);
        assert_eq!(render_text(&read.cues[2].text).unwrap(), "&lt;b onmouseover=alert(1)&gt;fine");
    }
}
