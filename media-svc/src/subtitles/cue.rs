//! What every subtitle format is read into, and the one writer of WebVTT.
//!
//! A cue's text is a list of tokens (text, an opening or a closing tag of the few WebVTT cue
//! tags kept); every format's reader makes tokens, and only `render_text` turns them into cue
//! text. It escapes all text (`&`, `<` and `>`: so that no `-->` can start a new cue and no
//! markup survives), balances the tags (closing what a format left open, reopening what an
//! overlapping close shut), keeps only the WebVTT classes and the annotations `v` and `lang`
//! carry, and drops blank lines (a blank line would end the cue). Whatever a file holds, what
//! is stored is WebVTT made here.

use std::fmt::Write as _;

/// Percent in hundredths (0..=10000): WebVTT settings without floating point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(pub u32);

impl Percent {
    pub const MAX: u32 = 10_000;

    /// `50%`, `12.5%`, `33.33%`; `None` outside 0–100 % or for anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let number = text.strip_suffix('%')?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() || whole.len() > 3 || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) || number.ends_with('.') {
            return None;
        }
        let whole: u32 = whole.parse().ok()?;
        let hundredths: u32 = format!("{fraction:0<2}")[..2].parse().ok()?;
        let value = whole.checked_mul(100)?.checked_add(hundredths)?;
        (value <= Self::MAX).then_some(Self(value))
    }

    /// `part / whole` of the way, clamped to 0–100 %.
    #[must_use]
    pub fn of(part: i64, whole: i64) -> Self {
        if whole <= 0 {
            return Self(0);
        }
        let value = part.saturating_mul(i64::from(Self::MAX)) / whole;
        Self(u32::try_from(value.clamp(0, i64::from(Self::MAX))).unwrap_or(0))
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, hundredths) = (self.0 / 100, self.0 % 100);
        match hundredths {
            0 => write!(f, "{whole}%"),
            h if h % 10 == 0 => write!(f, "{whole}.{}%", h / 10),
            h => write!(f, "{whole}.{h:02}%"),
        }
    }
}

/// Where a cue's line goes: a line number (0 = top, -1 = bottom) or a percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineValue {
    Number(i32),
    Percent(Percent),
}

/// Which part of the cue box the line value places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineAnchor {
    Start,
    Center,
    End,
}

/// Which part of the cue box the position places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionAnchor {
    LineLeft,
    Center,
    LineRight,
}

/// The cue's text alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Start,
    Center,
    End,
    Left,
    Right,
}

/// WebVTT cue settings, each checked; `region` is never kept (regions are not carried over).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// `rl` (true) or `lr` (false) vertical text.
    pub vertical: Option<bool>,
    pub line: Option<(LineValue, Option<LineAnchor>)>,
    pub position: Option<(Percent, Option<PositionAnchor>)>,
    pub size: Option<Percent>,
    pub align: Option<Align>,
}

/// Most line numbers a cue may ask for either way.
const MAX_LINE_NUMBER: i32 = 1000;

impl Settings {
    /// Reads WebVTT settings (`line:0 align:start …`); anything unknown or malformed is left
    /// out.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut settings = Self::default();
        for setting in text.split_whitespace() {
            let Some((name, value)) = setting.split_once(':') else { continue };
            match name {
                "vertical" => {
                    settings.vertical = match value {
                        "rl" => Some(true),
                        "lr" => Some(false),
                        _ => settings.vertical,
                    };
                }
                "line" => {
                    let (value, anchor) = value.split_once(',').map_or((value, None), |(v, a)| (v, Some(a)));
                    let anchor = match anchor {
                        None => Some(None),
                        Some("start") => Some(Some(LineAnchor::Start)),
                        Some("center") => Some(Some(LineAnchor::Center)),
                        Some("end") => Some(Some(LineAnchor::End)),
                        Some(_) => None,
                    };
                    let line = if value.ends_with('%') {
                        Percent::parse(value).map(LineValue::Percent)
                    } else {
                        value
                            .parse::<i32>()
                            .ok()
                            .filter(|number| (-MAX_LINE_NUMBER..=MAX_LINE_NUMBER).contains(number))
                            .filter(|_| value.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
                            .map(LineValue::Number)
                    };
                    if let (Some(line), Some(anchor)) = (line, anchor) {
                        settings.line = Some((line, anchor));
                    }
                }
                "position" => {
                    let (value, anchor) = value.split_once(',').map_or((value, None), |(v, a)| (v, Some(a)));
                    let anchor = match anchor {
                        None => Some(None),
                        Some("line-left") => Some(Some(PositionAnchor::LineLeft)),
                        Some("center") => Some(Some(PositionAnchor::Center)),
                        Some("line-right") => Some(Some(PositionAnchor::LineRight)),
                        Some(_) => None,
                    };
                    if let (Some(position), Some(anchor)) = (Percent::parse(value), anchor) {
                        settings.position = Some((position, anchor));
                    }
                }
                "size" => settings.size = Percent::parse(value).or(settings.size),
                "align" => {
                    settings.align = match value {
                        "start" => Some(Align::Start),
                        "center" | "middle" => Some(Align::Center),
                        "end" => Some(Align::End),
                        "left" => Some(Align::Left),
                        "right" => Some(Align::Right),
                        _ => settings.align,
                    };
                }
                _ => {}
            }
        }
        settings
    }

    /// The settings as written after a cue's timings (empty when none).
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Some(vertical) = self.vertical {
            out.push(format!("vertical:{}", if vertical { "rl" } else { "lr" }));
        }
        if let Some((value, anchor)) = self.line {
            let value = match value {
                LineValue::Number(number) => number.to_string(),
                LineValue::Percent(percent) => percent.to_string(),
            };
            let anchor = match anchor {
                None => "",
                Some(LineAnchor::Start) => ",start",
                Some(LineAnchor::Center) => ",center",
                Some(LineAnchor::End) => ",end",
            };
            out.push(format!("line:{value}{anchor}"));
        }
        if let Some((value, anchor)) = self.position {
            let anchor = match anchor {
                None => "",
                Some(PositionAnchor::LineLeft) => ",line-left",
                Some(PositionAnchor::Center) => ",center",
                Some(PositionAnchor::LineRight) => ",line-right",
            };
            out.push(format!("position:{value}{anchor}"));
        }
        if let Some(size) = self.size {
            out.push(format!("size:{size}"));
        }
        if let Some(align) = self.align {
            let word = match align {
                Align::Start => "start",
                Align::Center => "center",
                Align::End => "end",
                Align::Left => "left",
                Align::Right => "right",
            };
            out.push(format!("align:{word}"));
        }
        out.join(" ")
    }

    /// The place an ASS/SRT numpad alignment (`\an1`…`\an9`) names: 7–9 top, 4–6 middle,
    /// 1–3 bottom (WebVTT's default); left, centre (the default) or right.
    #[must_use]
    pub fn from_numpad(alignment: u8) -> Self {
        let mut settings = Self::default();
        match alignment {
            7..=9 => settings.line = Some((LineValue::Number(0), None)),
            4..=6 => settings.line = Some((LineValue::Percent(Percent(5000)), Some(LineAnchor::Center))),
            _ => {}
        }
        match alignment {
            1 | 4 | 7 => settings.align = Some(Align::Left),
            3 | 6 | 9 => settings.align = Some(Align::Right),
            _ => {}
        }
        settings
    }
}

/// The cue tags kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    Bold,
    Italic,
    Underline,
    /// `<c.class>`: a class span.
    Class,
    /// `<v Speaker>`.
    Voice,
    /// `<lang zh-CN>`.
    Lang,
    Ruby,
    RubyText,
}

impl TagKind {
    /// The tag a WebVTT name stands for (names are case-sensitive in WebVTT).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "b" => Self::Bold,
            "i" => Self::Italic,
            "u" => Self::Underline,
            "c" => Self::Class,
            "v" => Self::Voice,
            "lang" => Self::Lang,
            "ruby" => Self::Ruby,
            "rt" => Self::RubyText,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Bold => "b",
            Self::Italic => "i",
            Self::Underline => "u",
            Self::Class => "c",
            Self::Voice => "v",
            Self::Lang => "lang",
            Self::Ruby => "ruby",
            Self::RubyText => "rt",
        }
    }
}

/// An opening tag: its kind, WebVTT classes and (for `v` and `lang`) its annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub kind: TagKind,
    pub classes: Vec<String>,
    pub annotation: String,
}

impl Tag {
    #[must_use]
    pub fn plain(kind: TagKind) -> Self {
        Self { kind, classes: Vec::new(), annotation: String::new() }
    }
}

/// A piece of cue text as a reader found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// Text as people read it (not escaped); `\n` breaks the line.
    Text(String),
    Open(Tag),
    Close(TagKind),
}

/// One cue: times in milliseconds, settings, text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    pub start_ms: u64,
    pub end_ms: u64,
    pub settings: Settings,
    pub text: Vec<Token>,
}

/// What a reader made of a file: the cues with text, and how many needed a repair or were
/// left out (unreadable or impossible timings, no text, text too long).
#[derive(Debug, Default)]
pub struct Read {
    pub cues: Vec<Cue>,
    pub repaired: usize,
    pub skipped: usize,
}

/// The most characters one cue's text may have; a longer one is left out.
pub const MAX_CUE_CHARS: usize = 2000;

impl Read {
    /// Keeps `cue` when it shows some text (of a sane length), else counts it as skipped.
    pub fn push(&mut self, cue: Cue, repaired: bool) {
        let chars: usize =
            cue.text.iter().map(|token| if let Token::Text(text) = token { text.chars().count() } else { 0 }).sum();
        let shows_text = cue.text.iter().any(|token| matches!(token, Token::Text(text) if !text.trim().is_empty()));
        if !shows_text || chars > MAX_CUE_CHARS {
            self.skipped += 1;
            return;
        }
        self.repaired += usize::from(repaired);
        self.cues.push(cue);
    }
}

/// Classes at most kept per tag, and their longest name.
const MAX_CLASSES: usize = 4;
const MAX_CLASS_CHARS: usize = 32;
/// Tags at most open at once.
const MAX_DEPTH: usize = 8;
/// The longest annotation (speaker name or language) kept.
const MAX_ANNOTATION_CHARS: usize = 64;

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' => out.push(' '),
            '\n' => out.push('\n'),
            // A carriage return or any other control character would change the file's lines or
            // show as nothing.
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
}

fn valid_class(class: &str) -> bool {
    !class.is_empty()
        && class.chars().count() <= MAX_CLASS_CHARS
        && class.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn write_open(out: &mut String, tag: &Tag) {
    out.push('<');
    out.push_str(tag.kind.name());
    for class in tag.classes.iter().filter(|class| valid_class(class)).take(MAX_CLASSES) {
        out.push('.');
        out.push_str(class);
    }
    let annotation: String =
        tag.annotation.chars().filter(|c| !c.is_control()).take(MAX_ANNOTATION_CHARS).collect::<String>();
    let annotation = annotation.trim();
    if matches!(tag.kind, TagKind::Voice | TagKind::Lang) && !annotation.is_empty() {
        out.push(' ');
        escape_into(out, annotation);
    }
    out.push('>');
}

fn write_close(out: &mut String, kind: TagKind) {
    let _ = write!(out, "</{}>", kind.name());
}

/// The WebVTT cue text of `tokens`, or `None` when it shows nothing.
#[must_use]
pub fn render_text(tokens: &[Token]) -> Option<String> {
    let mut out = String::new();
    let mut open: Vec<Tag> = Vec::new();
    let mut visible = false;
    for token in tokens {
        match token {
            Token::Text(text) => {
                visible |= text.chars().any(|c| !c.is_whitespace() && !c.is_control());
                escape_into(&mut out, text);
            }
            Token::Open(tag) => {
                let in_ruby = open.iter().any(|open| open.kind == TagKind::Ruby);
                let misplaced = match tag.kind {
                    TagKind::RubyText => !in_ruby,
                    TagKind::Ruby => in_ruby,
                    _ => false,
                };
                let bad_lang = tag.kind == TagKind::Lang && crate::subtitles::language_tag(&tag.annotation).is_none();
                if misplaced || bad_lang || open.len() >= MAX_DEPTH {
                    continue;
                }
                write_open(&mut out, tag);
                open.push(tag.clone());
            }
            Token::Close(kind) => {
                let Some(at) = open.iter().rposition(|tag| tag.kind == *kind) else { continue };
                // Tags opened inside the one closed are closed with it and opened again after
                // (`<b>a<i>b</b>c</i>` → `<b>a<i>b</i></b><i>c</i>`), except a ruby's text.
                let inner: Vec<Tag> = open.drain(at + 1..).collect();
                for tag in inner.iter().rev() {
                    write_close(&mut out, tag.kind);
                }
                write_close(&mut out, *kind);
                open.truncate(at);
                for tag in inner.into_iter().filter(|tag| tag.kind != TagKind::RubyText) {
                    if tag.kind == TagKind::Ruby && open.iter().any(|open| open.kind == TagKind::Ruby) {
                        continue;
                    }
                    write_open(&mut out, &tag);
                    open.push(tag);
                }
            }
        }
    }
    for tag in open.iter().rev() {
        write_close(&mut out, tag.kind);
    }
    if !visible {
        return None;
    }
    let lines: Vec<&str> = out.split('\n').map(str::trim_end).filter(|line| !line.trim().is_empty()).collect();
    Some(lines.join("\n"))
}

/// `HH:MM:SS.mmm`.
#[must_use]
pub fn format_timestamp(ms: u64) -> String {
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    format!("{hours:02}:{minutes:02}:{:02}.{:03}", rest / 1000, rest % 1000)
}

/// How a format writes its timestamps, so that a deviation counts as a repair.
#[derive(Debug, Clone, Copy)]
pub struct TimestampStyle {
    /// `,` for SRT, `.` for WebVTT and ASS.
    pub separator: char,
    /// Digits after the separator: 3, or 2 for ASS (centiseconds).
    pub fraction_digits: usize,
    /// Whether `MM:SS.mmm` (no hours) is a form of the format itself (WebVTT) or a repair.
    pub hours_optional: bool,
}

/// The most hours a timestamp may have: a cue at 100 hours is a typo.
const MAX_HOURS: u64 = 99;

/// Reads a timestamp; `Some((ms, repaired))`, `repaired` when the format's own form was not
/// followed but the meaning is clear (the other decimal separator, a missing hour, one digit
/// for two, fewer or no fraction digits). `None` when it cannot be read (a field out of range,
/// letters, too many digits).
#[must_use]
pub fn parse_timestamp(text: &str, style: TimestampStyle) -> Option<(u64, bool)> {
    let text = text.trim();
    let mut repaired = false;
    let (clock, fraction) = match text.rfind(['.', ',']) {
        Some(at) => {
            let separator = text[at..].chars().next()?;
            repaired |= separator != style.separator;
            (&text[..at], &text[at + 1..])
        }
        None => {
            repaired = true;
            (text, "")
        }
    };
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    repaired |= fraction.len() != style.fraction_digits;
    let fraction_ms: u64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<3}").parse().ok()? };
    let parts: Vec<&str> = clock.split(':').collect();
    if parts.iter().any(|part| part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let (hours, minutes, seconds) = match parts.as_slice() {
        [hours, minutes, seconds] => (*hours, *minutes, *seconds),
        [minutes, seconds] => {
            repaired |= !style.hours_optional;
            ("0", *minutes, *seconds)
        }
        _ => return None,
    };
    repaired |= minutes.len() != 2 || seconds.len() != 2;
    let (hours, minutes, seconds): (u64, u64, u64) =
        (hours.parse().ok()?, minutes.parse().ok()?, seconds.parse().ok()?);
    if minutes >= 60 || seconds >= 60 || hours > MAX_HOURS {
        return None;
    }
    Some(((hours * 3600 + minutes * 60 + seconds) * 1000 + fraction_ms, repaired))
}

/// A timing line read: start, end, what follows the end, and whether it needed a repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing<'a> {
    pub start_ms: u64,
    pub end_ms: u64,
    pub rest: &'a str,
    pub repaired: bool,
}

/// Whether a line is meant as a timing line: it starts with a digit and has an arrow.
#[must_use]
pub fn is_timing_line(line: &str) -> bool {
    line.trim_start().starts_with(|c: char| c.is_ascii_digit()) && line.contains("->")
}

/// Reads `start --> end rest`; `None` when a time cannot be read or the cue would end before it
/// starts. An arrow of one or three dashes, or none of the spaces, is repaired.
#[must_use]
pub fn parse_timing(line: &str, style: TimestampStyle) -> Option<Timing<'_>> {
    let (left, right, mut repaired) = match line.find("-->") {
        Some(at) => (&line[..at], line[at + 3..].trim_start_matches('>'), line[at + 3..].starts_with('>')),
        None => {
            let at = line.find("->")?;
            (&line[..at], &line[at + 2..], true)
        }
    };
    repaired |= left.ends_with('-');
    let left = left.trim_end_matches('-');
    let right = right.trim_start();
    let end_text = right.split_whitespace().next()?;
    let rest = right[end_text.len()..].trim();
    let (start_ms, start_repaired) = parse_timestamp(left, style)?;
    let (end_ms, end_repaired) = parse_timestamp(end_text, style)?;
    repaired |= start_repaired || end_repaired;
    (end_ms > start_ms).then_some(Timing { start_ms, end_ms, rest, repaired })
}

/// A cue block: its timing line and its text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block<'a> {
    pub timing: &'a str,
    pub text: Vec<&'a str>,
}

/// The cue blocks of SRT or WebVTT `lines`: each timing line with the lines under it up to a
/// blank line or the next timing line. Blocks `skip` recognises by their first line (WebVTT's
/// header, notes, styles and regions) are passed over whole. A number alone on the last line
/// before a timing line is the next cue's index (a blank line was missing), not text.
pub fn blocks<'a>(lines: &[&'a str], skip: impl Fn(&str) -> bool) -> Vec<Block<'a>> {
    let mut out = Vec::new();
    let mut index = 0;
    let mut block_start = true;
    while index < lines.len() {
        let line = lines[index];
        if line.trim().is_empty() {
            block_start = true;
            index += 1;
            continue;
        }
        if block_start && skip(line) {
            while index < lines.len() && !lines[index].trim().is_empty() {
                index += 1;
            }
            continue;
        }
        block_start = false;
        if !is_timing_line(line) {
            index += 1;
            continue;
        }
        let mut text = Vec::new();
        let mut next = index + 1;
        while next < lines.len() && !lines[next].trim().is_empty() && !is_timing_line(lines[next]) {
            text.push(lines[next]);
            next += 1;
        }
        if next < lines.len()
            && is_timing_line(lines[next])
            && text.last().is_some_and(|last| last.trim().bytes().all(|b| b.is_ascii_digit()))
        {
            text.pop();
        }
        out.push(Block { timing: line, text });
        index = next;
    }
    out
}

/// Decodes the character references WebVTT and SRT files use (`&amp;`, `&lt;`, `&gt;`,
/// `&nbsp;`, `&quot;`, `&apos;`, `&lrm;`, `&rlm;`, `&#…;`, `&#x…;`); any other `&` is text.
#[must_use]
pub fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let reference = rest.find(';').filter(|&end| end <= 10).map(|end| &rest[1..end]);
        let decoded = reference.and_then(|name| match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "nbsp" => Some('\u{a0}'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "lrm" => Some('\u{200e}'),
            "rlm" => Some('\u{200f}'),
            _ => {
                let number = name.strip_prefix('#')?;
                let code = match number.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => number.parse().ok()?,
                };
                char::from_u32(code).filter(|c| !c.is_control() || *c == '\n')
            }
        });
        match (decoded, reference) {
            (Some(c), Some(name)) => {
                out.push(c);
                rest = &rest[name.len() + 2..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The WebVTT file of `cues` (sorted by start time by the caller).
#[must_use]
pub fn render_file(cues: &[(Cue, String)]) -> String {
    let mut out = String::from("WEBVTT\n");
    for (cue, text) in cues {
        let settings = cue.settings.render();
        let _ = write!(out, "\n{} --> {}", format_timestamp(cue.start_ms), format_timestamp(cue.end_ms));
        if !settings.is_empty() {
            out.push(' ');
            out.push_str(&settings);
        }
        out.push('\n');
        out.push_str(text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRT: TimestampStyle = TimestampStyle { separator: ',', fraction_digits: 3, hours_optional: false };
    const VTT: TimestampStyle = TimestampStyle { separator: '.', fraction_digits: 3, hours_optional: true };

    fn text(value: &str) -> Token {
        Token::Text(value.to_owned())
    }

    #[test]
    fn timestamps_read_repair_or_refuse() {
        assert_eq!(parse_timestamp("01:02:03,456", SRT), Some((3_723_456, false)));
        assert_eq!(parse_timestamp("01:02:03.456", SRT), Some((3_723_456, true)));
        assert_eq!(parse_timestamp("02:03,456", SRT), Some((123_456, true)));
        assert_eq!(parse_timestamp("02:03.456", VTT), Some((123_456, false)));
        assert_eq!(parse_timestamp("1:2:3,5", SRT), Some((3_723_500, true)));
        assert_eq!(parse_timestamp("00:00:03", SRT), Some((3_000, true)));
        assert_eq!(parse_timestamp("00:61:03,000", SRT), None);
        assert_eq!(parse_timestamp("00:00:03,0000", SRT), None);
        assert_eq!(parse_timestamp("aa:00:03,000", SRT), None);
        assert_eq!(parse_timestamp("", SRT), None);
    }

    #[test]
    fn timing_lines() {
        let timing = parse_timing("00:00:01,000 --> 00:00:02,500 X1:10", SRT).unwrap();
        assert_eq!((timing.start_ms, timing.end_ms, timing.rest, timing.repaired), (1000, 2500, "X1:10", false));
        assert!(parse_timing("00:00:01,000->00:00:02,500", SRT).unwrap().repaired);
        assert!(parse_timing("00:00:01,000 ---> 00:00:02,500", SRT).unwrap().repaired);
        assert_eq!(parse_timing("00:00:03,000 --> 00:00:02,000", SRT), None, "ends before it starts");
        assert_eq!(parse_timing("00:00:03,000 --> 00:00:03,000", SRT), None, "no duration");
        assert_eq!(parse_timing("00:00:03,000 --> ", SRT), None);
    }

    #[test]
    fn settings_round_trip_and_drop_what_is_malformed() {
        let settings = Settings::parse("line:0 position:12.5%,line-left size:50% align:start region:r1 vertical:rl");
        assert_eq!(settings.render(), "vertical:rl line:0 position:12.5%,line-left size:50% align:start");
        assert_eq!(Settings::parse("line:50%,center align:middle").render(), "line:50%,center align:center");
        let junk = Settings::parse("line:abc position:140% size:-1% align:justify line:5,top evil:<b>");
        assert_eq!(junk, Settings::default());
        assert_eq!(Settings::from_numpad(8).render(), "line:0");
        assert_eq!(Settings::from_numpad(1).render(), "align:left");
        assert_eq!(Settings::from_numpad(6).render(), "line:50%,center align:right");
        assert_eq!(Percent::of(320, 640), Percent(5000));
        assert_eq!(Percent::of(-5, 640), Percent(0));
    }

    #[test]
    fn text_is_escaped_and_tags_balanced() {
        let tokens = [
            Token::Open(Tag::plain(TagKind::Bold)),
            text("a & b <script>"),
            Token::Open(Tag::plain(TagKind::Italic)),
            text("--> c"),
            Token::Close(TagKind::Bold),
            text("d\n\n e"),
            Token::Close(TagKind::Underline),
        ];
        assert_eq!(
            render_text(&tokens).unwrap(),
            "<b>a &amp; b &lt;script&gt;<i>--&gt; c</i></b><i>d\n e</i>",
            "the blank line is dropped, the overlap reopened, the stray close ignored"
        );
        let voice =
            Tag { kind: TagKind::Voice, classes: vec!["loud".into(), "bad class".into()], annotation: "Mei <3".into() };
        assert_eq!(render_text(&[Token::Open(voice), text("hi")]).unwrap(), "<v.loud Mei &lt;3>hi</v>");
        let rt = [Token::Open(Tag::plain(TagKind::RubyText)), text("x")];
        assert_eq!(render_text(&rt).unwrap(), "x", "rt outside ruby");
        assert_eq!(render_text(&[Token::Open(Tag::plain(TagKind::Bold)), text(" \n ")]), None);
    }

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a &amp; b &lt;i&gt; &#x4e2d;&#25991; &bogus; & c"), "a & b <i> 中文 &bogus; & c");
    }

    #[test]
    fn blocks_with_missing_blank_lines() {
        let lines = ["1", "00:00:01,000 --> 00:00:02,000", "one", "2", "00:00:03,000 --> 00:00:04,000", "two", "", "x"];
        let found = blocks(&lines, |_| false);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].text, ["one"]);
        assert_eq!(found[1].text, ["two"]);
    }
}
