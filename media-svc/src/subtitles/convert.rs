//! A subtitle file to the WebVTT that is stored: bytes decoded (`decode`), the format told from
//! the text itself (not the file name), the format's reader, then limits, order and the one
//! WebVTT writer. Pure: no I/O, so it is what the fuzz target drives.

use super::cue::{Cue, render_file, render_text};
use super::decode::{NotText, decode};
use super::{ass, srt, vtt};

/// The subtitle formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Srt,
    WebVtt,
    Ass,
    Ssa,
}

impl Format {
    /// Its usual file name extension, as stored and shown.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Srt => "srt",
            Self::WebVtt => "vtt",
            Self::Ass => "ass",
            Self::Ssa => "ssa",
        }
    }
}

/// What a converted file may be at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the file as given.
    pub max_bytes: usize,
    /// Cues with text after conversion.
    pub max_cues: usize,
}

/// Why a file is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    /// Over `Limits::max_bytes`.
    TooLarge {
        max_bytes: usize,
    },
    /// A binary file (a video, a picture, an archive, a bitmap subtitle…).
    Binary,
    /// Text, but neither SRT, WebVTT nor ASS/SSA.
    UnknownFormat,
    /// More cues than `Limits::max_cues`.
    TooManyCues {
        max_cues: usize,
    },
    /// Not one cue could be read; `skipped` were tried.
    NoValidCues {
        skipped: usize,
    },
}

/// A converted file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub vtt: String,
    pub format: Format,
    /// The encoding the file was in (WHATWG name).
    pub encoding: &'static str,
    pub cue_count: usize,
    /// Cues whose timestamps were repaired.
    pub repaired: usize,
    /// Cues left out: timings that cannot be read or end before they start, or no text.
    pub skipped: usize,
}

/// The format `text` is in, from its content.
#[must_use]
pub fn detect(text: &str) -> Option<Format> {
    let head = text.trim_start();
    if head.starts_with("WEBVTT") {
        return Some(Format::WebVtt);
    }
    let lower = text.get(..text.len().min(64 * 1024)).unwrap_or(text).to_ascii_lowercase();
    let is_ass = lower.contains("[script info]") || (lower.contains("[events]") && lower.contains("dialogue:"));
    if is_ass {
        let legacy = lower.contains("[v4 styles]")
            || lower.contains("scripttype: v4.00\n")
            || lower.contains("scripttype: v4.00\r");
        return Some(if legacy { Format::Ssa } else { Format::Ass });
    }
    text.lines().any(super::cue::is_timing_line).then_some(Format::Srt)
}

/// Converts a subtitle file to WebVTT.
///
/// # Errors
/// The `Refusal` that names what is wrong with the file.
pub fn convert(bytes: &[u8], limits: Limits) -> Result<Converted, Refusal> {
    if bytes.len() > limits.max_bytes {
        return Err(Refusal::TooLarge { max_bytes: limits.max_bytes });
    }
    let decoded = decode(bytes).map_err(|error| match error {
        NotText::Empty => Refusal::Empty,
        NotText::Binary => Refusal::Binary,
    })?;
    let text = decoded.text.trim_start_matches('\u{feff}');
    let format = detect(text).ok_or(Refusal::UnknownFormat)?;
    let read = match format {
        Format::Srt => srt::read(text),
        Format::WebVtt => vtt::read(text),
        Format::Ass | Format::Ssa => ass::read(text),
    };
    let mut skipped = read.skipped;
    let mut cues: Vec<(Cue, String)> = Vec::with_capacity(read.cues.len());
    for cue in read.cues {
        match render_text(&cue.text) {
            Some(text) => cues.push((cue, text)),
            None => skipped += 1,
        }
        if cues.len() > limits.max_cues {
            return Err(Refusal::TooManyCues { max_cues: limits.max_cues });
        }
    }
    if cues.is_empty() {
        return Err(Refusal::NoValidCues { skipped });
    }
    // WebVTT wants cues in order of their start; ASS events need not be.
    cues.sort_by_key(|(cue, _)| (cue.start_ms, cue.end_ms));
    Ok(Converted {
        vtt: render_file(&cues),
        format,
        encoding: decoded.encoding,
        cue_count: cues.len(),
        repaired: read.repaired,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_bytes: 1 << 20, max_cues: 100 };

    #[test]
    fn formats_are_told_by_content() {
        assert_eq!(detect("\n\nWEBVTT\n"), Some(Format::WebVtt));
        assert_eq!(detect("1\n00:00:01,000 --> 00:00:02,000\nx\n"), Some(Format::Srt));
        assert_eq!(detect("[Script Info]\nScriptType: v4.00+\n"), Some(Format::Ass));
        assert_eq!(detect("[Script Info]\nScriptType: v4.00\n[V4 Styles]\n"), Some(Format::Ssa));
        assert_eq!(detect("just some notes\nabout a film\n"), None);
    }

    #[test]
    fn a_whole_file() {
        let srt = "2\n00:00:05,000 --> 00:00:06,000\n<i>second</i>\n\n1\n00:00:01,000 --> 00:00:02,000\n{\\an8}first\n";
        let converted = convert(srt.as_bytes(), LIMITS).unwrap();
        assert_eq!(
            converted.vtt,
            "WEBVTT\n\n00:00:01.000 --> 00:00:02.000 line:0\nfirst\n\n00:00:05.000 --> 00:00:06.000\n<i>second</i>\n"
        );
        assert_eq!((converted.format, converted.encoding, converted.cue_count), (Format::Srt, "UTF-8", 2));
        // What is stored reads back as the same WebVTT.
        assert_eq!(convert(converted.vtt.as_bytes(), LIMITS).unwrap().vtt, converted.vtt);
    }

    #[test]
    fn the_fuzzing_invariants_hold_for_hostile_files() {
        for sample in [
            "1\n00:00:01,000 --> 00:00:02,000\n<b><i>a</b>b</i> &#10;&lt;x&gt; {\\an5}<font a=1>c</font> 1->2 -->\n",
            "WEBVTT\n\n00:01.000 --> 00:02.000 line:12.5%,end position:3%,line-left size:40% align:end\n<v Mei <3>hi</v><lang zh-Hant>x</lang>\n",
            "[Events]\nDialogue: 0,0:00:02.00,0:00:03.00,D,,0,0,0,,{\\pos(1,2)\\i1}x\\Ny\\h\n",
            "1\n00:00:01,000 --> 00:00:02,000\n\u{2028}\u{85}<ruby>a<rt>b</ruby></rt>\n",
        ] {
            crate::fuzzing::subtitle_file(sample.as_bytes());
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(convert(b"", LIMITS), Err(Refusal::Empty));
        assert_eq!(
            convert(&[b'x'; 2000], Limits { max_bytes: 1000, ..LIMITS }),
            Err(Refusal::TooLarge { max_bytes: 1000 })
        );
        assert_eq!(convert(b"\x89PNG\r\n\x1a\n", LIMITS), Err(Refusal::Binary));
        assert_eq!(convert(b"shopping list\nmilk\n", LIMITS), Err(Refusal::UnknownFormat));
        let bad = "1\n00:00:09,000 --> 00:00:01,000\nbackwards\n\n2\n00:00:0x,000 --> 00:00:01,000\nx\n";
        assert_eq!(convert(bad.as_bytes(), LIMITS), Err(Refusal::NoValidCues { skipped: 2 }));
        let many: String = (0..101)
            .map(|n| format!("{n}\n00:00:{:02},000 --> 00:00:{:02},500\nline {n}\n\n", n % 60, n % 60))
            .collect();
        assert_eq!(convert(many.as_bytes(), LIMITS), Err(Refusal::TooManyCues { max_cues: 100 }));
    }
}
