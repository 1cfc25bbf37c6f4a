//! Advanced SubStation Alpha (`.ass`) and SubStation Alpha (`.ssa`): the `Dialogue:` lines of
//! `[Events]`, read through their `Format:` line. What WebVTT can say is kept: italic, bold and
//! underline (from the line's style and from `\i`, `\b`, `\u` overrides), `\N` line breaks,
//! the alignment (`\an`, SSA's `\a`, or the style's) as a line and alignment, and `\pos(x,y)`
//! as a position and line in percent of the script's resolution. Every other override tag
//! (colours, fonts, karaoke, motion, clips) is dropped, and drawings (`\p1`…`\p0`) with their
//! drawing commands. `Comment:` lines are not shown.

use std::collections::HashMap;

use super::cue::{
    Align, Cue, LineAnchor, LineValue, Percent, PositionAnchor, Read, Settings, Tag, TagKind, TimestampStyle, Token,
    parse_timestamp,
};

const STYLE: TimestampStyle = TimestampStyle { separator: '.', fraction_digits: 2, hours_optional: false };
/// libass's resolution when a script names none.
const DEFAULT_PLAY_RES: (i64, i64) = (384, 288);
const DEFAULT_EVENT_FORMAT: &str = "Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text";

#[derive(Debug, Clone, Copy, Default)]
struct Style {
    bold: bool,
    italic: bool,
    underline: bool,
    /// Numpad alignment (1–9).
    alignment: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Info,
    Styles { legacy: bool },
    Events,
    Other,
}

/// SSA's alignment (1–3 bottom, 5–7 top, 9–11 middle) as the numpad's.
fn legacy_alignment(value: u8) -> Option<u8> {
    match value {
        1..=3 => Some(value),
        5..=7 => Some(value + 2),
        9..=11 => Some(value - 5),
        _ => None,
    }
}

fn flag(value: &str) -> bool {
    // `-1` is true in ASS; a font weight (`700`) counts as bold.
    value.trim().parse::<i64>().is_ok_and(|number| number != 0)
}

fn columns(format: &str) -> Vec<String> {
    format.split(',').map(|name| name.trim().to_ascii_lowercase()).collect()
}

/// Reads ASS/SSA text.
#[must_use]
pub fn read(text: &str) -> Read {
    let mut read = Read::default();
    let mut section = Section::Other;
    let mut play_res = (None, None);
    let mut styles: HashMap<String, Style> = HashMap::new();
    let mut style_format: Vec<String> = Vec::new();
    let mut event_format = columns(DEFAULT_EVENT_FORMAT);
    let mut dialogues = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            section = match line.to_ascii_lowercase().as_str() {
                "[script info]" => Section::Info,
                "[v4+ styles]" => Section::Styles { legacy: false },
                "[v4 styles]" => Section::Styles { legacy: true },
                "[events]" => Section::Events,
                _ => Section::Other,
            };
            continue;
        }
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim_start();
        match (section, key.trim().to_ascii_lowercase().as_str()) {
            (Section::Info, "playresx") => play_res.0 = value.trim().parse::<i64>().ok().filter(|x| *x > 0),
            (Section::Info, "playresy") => play_res.1 = value.trim().parse::<i64>().ok().filter(|y| *y > 0),
            (Section::Styles { .. }, "format") => style_format = columns(value),
            (Section::Styles { legacy }, "style") => {
                let fields: Vec<&str> = value.split(',').map(str::trim).collect();
                let field =
                    |name: &str| style_format.iter().position(|column| column == name).and_then(|at| fields.get(at));
                let alignment = field("alignment").and_then(|value| value.parse::<u8>().ok());
                let alignment = if legacy { alignment.and_then(legacy_alignment) } else { alignment };
                let style = Style {
                    bold: field("bold").is_some_and(|value| flag(value)),
                    italic: field("italic").is_some_and(|value| flag(value)),
                    underline: field("underline").is_some_and(|value| flag(value)),
                    alignment: alignment.filter(|a| (1..=9).contains(a)).unwrap_or(2),
                };
                if let Some(name) = field("name") {
                    styles.insert(name.trim_start_matches('*').to_owned(), style);
                }
            }
            (Section::Events, "format") => event_format = columns(value),
            (Section::Events, "dialogue") => dialogues.push(value),
            _ => {}
        }
    }
    // libass: with only one of the two given, the other follows the 4:3 default's proportion.
    let play_res = match play_res {
        (Some(x), Some(y)) => (x, y),
        (Some(x), None) => (x, if x == 1280 { 1024 } else { x * 3 / 4 }),
        (None, Some(y)) => (if y == 1024 { 1280 } else { y * 4 / 3 }, y),
        (None, None) => DEFAULT_PLAY_RES,
    };
    let column = |name: &str| event_format.iter().position(|column| column == name);
    let (Some(start_at), Some(end_at), Some(text_at)) = (column("start"), column("end"), column("text")) else {
        read.skipped += dialogues.len();
        return read;
    };
    let style_at = column("style");
    for dialogue in dialogues {
        // The text is the last column and may hold commas.
        let fields: Vec<&str> = dialogue.splitn(event_format.len(), ',').collect();
        let times = fields.get(start_at).zip(fields.get(end_at)).and_then(|(start, end)| {
            let (start_ms, start_repaired) = parse_timestamp(start, STYLE)?;
            let (end_ms, end_repaired) = parse_timestamp(end, STYLE)?;
            (end_ms > start_ms).then_some((start_ms, end_ms, start_repaired || end_repaired))
        });
        let (Some((start_ms, end_ms, repaired)), Some(text)) = (times, fields.get(text_at)) else {
            read.skipped += 1;
            continue;
        };
        let style = style_at
            .and_then(|at| fields.get(at))
            .and_then(|name| styles.get(name.trim().trim_start_matches('*')))
            .copied()
            .unwrap_or(Style { alignment: 2, ..Style::default() });
        let (settings, tokens) = dialogue_text(text, style, play_res);
        read.push(Cue { start_ms, end_ms, settings, text: tokens }, repaired);
    }
    read
}

/// What a line's override tags set.
#[derive(Debug, Default)]
struct Overrides {
    alignment: Option<u8>,
    position: Option<(i64, i64)>,
}

/// The numpad alignment an override block (`\an8`, `\a6`) names, if any: the first one counts.
#[must_use]
pub fn override_alignment(block: &str) -> Option<u8> {
    block.split('\\').find_map(|tag| {
        if let Some(value) = tag.strip_prefix("an") {
            value.trim().parse::<u8>().ok().filter(|a| (1..=9).contains(a))
        } else {
            let value = tag.strip_prefix('a')?;
            value.trim().parse::<u8>().ok().and_then(legacy_alignment)
        }
    })
}

/// The number in `\name<number>`, after the name.
fn number_after<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let value = tag.strip_prefix(name)?;
    (value.is_empty() || value.starts_with(|c: char| c.is_ascii_digit() || c == '-')).then_some(value.trim())
}

/// Turns italic/bold/underline on or off, as a tag token, when it changes.
fn set(state: &mut bool, on: bool, kind: TagKind, tokens: &mut Vec<Token>) {
    if *state != on {
        *state = on;
        tokens.push(if on { Token::Open(Tag::plain(kind)) } else { Token::Close(kind) });
    }
}

fn dialogue_text(text: &str, style: Style, play_res: (i64, i64)) -> (Settings, Vec<Token>) {
    let mut tokens = Vec::new();
    let (mut bold, mut italic, mut underline) = (false, false, false);
    set(&mut bold, style.bold, TagKind::Bold, &mut tokens);
    set(&mut italic, style.italic, TagKind::Italic, &mut tokens);
    set(&mut underline, style.underline, TagKind::Underline, &mut tokens);
    let mut overrides = Overrides::default();
    let mut drawing = false;
    let mut plain = String::new();
    let mut rest = text;
    loop {
        let Some(at) = rest.find(['{', '\\']) else {
            if !drawing {
                plain.push_str(rest);
            }
            break;
        };
        if !drawing {
            plain.push_str(&rest[..at]);
        }
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix('{') {
            let Some(end) = after.find('}') else {
                // An unclosed brace is text, as libass shows it.
                if !drawing {
                    plain.push('{');
                }
                rest = after;
                continue;
            };
            if !plain.is_empty() {
                tokens.push(Token::Text(std::mem::take(&mut plain)));
            }
            for tag in after[..end].split('\\').map(str::trim) {
                if let Some(value) = number_after(tag, "i").filter(|_| !tag.starts_with("iclip")) {
                    set(
                        &mut italic,
                        if value.is_empty() { style.italic } else { flag(value) },
                        TagKind::Italic,
                        &mut tokens,
                    );
                } else if tag.starts_with("bord") || tag.starts_with("blur") || tag.starts_with("be") {
                } else if let Some(value) = number_after(tag, "b") {
                    set(&mut bold, if value.is_empty() { style.bold } else { flag(value) }, TagKind::Bold, &mut tokens);
                } else if let Some(value) = number_after(tag, "u") {
                    let on = if value.is_empty() { style.underline } else { flag(value) };
                    set(&mut underline, on, TagKind::Underline, &mut tokens);
                } else if tag == "r" || (tag.starts_with('r') && !tag.starts_with("rnd")) {
                    set(&mut bold, style.bold, TagKind::Bold, &mut tokens);
                    set(&mut italic, style.italic, TagKind::Italic, &mut tokens);
                    set(&mut underline, style.underline, TagKind::Underline, &mut tokens);
                } else if let Some(value) = tag.strip_prefix("pos(").and_then(|value| value.strip_suffix(')')) {
                    let mut numbers = value
                        .split(',')
                        .map(|number| number.trim().split('.').next().and_then(|whole| whole.parse::<i64>().ok()));
                    if let (Some(Some(x)), Some(Some(y)), None) = (numbers.next(), numbers.next(), numbers.next()) {
                        overrides.position = overrides.position.or(Some((x, y)));
                    }
                } else if let Some(value) = number_after(tag, "p").filter(|value| !value.is_empty()) {
                    drawing = value.parse::<i64>().is_ok_and(|scale| scale > 0);
                } else if overrides.alignment.is_none() {
                    overrides.alignment = override_alignment(&format!("\\{tag}"));
                }
            }
            rest = &after[end + 1..];
        } else {
            // `\N` breaks the line, `\n` is a space where the script lets lines wrap, `\h` a
            // space that does not break; any other backslash is text.
            let (replacement, length) = match rest.as_bytes().get(1) {
                Some(b'N') => ("\n", 2),
                Some(b'n') => (" ", 2),
                Some(b'h') => ("\u{a0}", 2),
                _ => ("\\", 1),
            };
            if !drawing {
                plain.push_str(replacement);
            }
            rest = &rest[length..];
        }
    }
    if !plain.is_empty() {
        tokens.push(Token::Text(plain));
    }
    let alignment = overrides.alignment.unwrap_or(style.alignment);
    let settings = match overrides.position {
        Some((x, y)) => positioned(alignment, x, y, play_res),
        None => Settings::from_numpad(alignment),
    };
    (settings, tokens)
}

/// `\pos(x,y)`: the point the alignment names (a corner, an edge's middle or the centre) goes
/// to `x`, `y` of the script's resolution.
fn positioned(alignment: u8, x: i64, y: i64, play_res: (i64, i64)) -> Settings {
    let (anchor, align) = match alignment {
        1 | 4 | 7 => (PositionAnchor::LineLeft, Align::Left),
        3 | 6 | 9 => (PositionAnchor::LineRight, Align::Right),
        _ => (PositionAnchor::Center, Align::Center),
    };
    let line_anchor = match alignment {
        7..=9 => LineAnchor::Start,
        4..=6 => LineAnchor::Center,
        _ => LineAnchor::End,
    };
    Settings {
        line: Some((LineValue::Percent(Percent::of(y, play_res.1)), Some(line_anchor))),
        position: Some((Percent::of(x, play_res.0), Some(anchor))),
        align: Some(align),
        ..Settings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::cue::render_text;
    use super::*;

    const SCRIPT: &str = "[Script Info]\nScriptType: v4.00+\nPlayResX: 1920\nPlayResY: 1080\n\n\
        [V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, Bold, Italic, Underline, Alignment\n\
        Style: Default,Arial,48,&H00FFFFFF,0,0,0,2\nStyle: Thought,Arial,48,&H00FFFFFF,0,-1,0,8\n\n\
        [Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n";

    fn read_script(events: &str) -> Read {
        read(&format!("{SCRIPT}{events}"))
    }

    #[test]
    fn styles_overrides_and_breaks() {
        let read = read_script(
            "Dialogue: 0,0:00:01.00,0:00:04.50,Default,,0,0,0,,{\\i1}你好{\\i0}, {\\b1\\c&H0000FF&}world{\\b0}\\Nline two, with commas\n\
             Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,not shown\n\
             Dialogue: 0,0:00:05.00,0:00:06.00,Thought,,0,0,0,,{\\fad(200,200)}thinking{\\r} aloud\n",
        );
        assert_eq!((read.cues.len(), read.repaired, read.skipped), (2, 0, 0));
        assert_eq!((read.cues[0].start_ms, read.cues[0].end_ms), (1000, 4500));
        assert_eq!(render_text(&read.cues[0].text).unwrap(), "<i>你好</i>, <b>world</b>\nline two, with commas");
        assert_eq!(read.cues[0].settings, Settings::default(), "bottom centre is WebVTT's default");
        assert_eq!(
            render_text(&read.cues[1].text).unwrap(),
            "<i>thinking aloud</i>",
            "\\r resets to the style's italic"
        );
        assert_eq!(read.cues[1].settings.render(), "line:0", "the style's top alignment");
    }

    #[test]
    fn positions_and_drawings() {
        let read = read_script(
            "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,{\\an7\\pos(480,270)}corner\n\
             Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,{\\an9}right top\n\
             Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,{\\p1}m 0 0 l 100 0 100 100{\\p0}after\n\
             Dialogue: 0,0:00:09.00,0:00:02.00,Default,,0,0,0,,backwards\n\
             Dialogue: 0,0:00:0x.00,0:00:02.00,Default,,0,0,0,,unreadable\n\
             Dialogue: 0,0:00:01.5,0:00:03.00,Default,,0,0,0,,repaired\n",
        );
        assert_eq!((read.cues.len(), read.repaired, read.skipped), (4, 1, 2));
        assert_eq!(read.cues[0].settings.render(), "line:25%,start position:25%,line-left align:left");
        assert_eq!(read.cues[1].settings.render(), "line:0 align:right");
        assert_eq!(render_text(&read.cues[2].text).unwrap(), "after");
        assert_eq!(read.cues[3].start_ms, 1500);
    }

    #[test]
    fn ssa_legacy_alignment() {
        let ssa = "[Script Info]\nScriptType: v4.00\n\n[V4 Styles]\nFormat: Name, Fontname, Bold, Italic, Alignment\n\
                   Style: Top,Arial,0,0,6\n\n[Events]\nFormat: Marked, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n\
                   Dialogue: Marked=0,0:00:01.00,0:00:02.00,Top,,0,0,0,,{\\a1}left bottom\nDialogue: Marked=0,0:00:01.00,0:00:02.00,Top,,0,0,0,,top\n";
        let read = read(ssa);
        assert_eq!(read.cues[0].settings.render(), "align:left");
        assert_eq!(read.cues[1].settings.render(), "line:0");
    }
}
