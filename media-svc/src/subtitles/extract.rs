//! The subtitle streams inside a media file (Matroska, MP4): listed with ffprobe, each text
//! stream written out by ffmpeg in a format `convert` reads (SubRip, ASS or WebVTT) on its
//! standard output, under the probe deadline. Bitmap streams (PGS, DVD, DVB) have no text.

use std::path::Path;

use serde::Deserialize;
use tokio::process::Command;

use crate::Error;
use crate::probe::Prober;

/// A subtitle stream of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The stream's index in the file (ffmpeg's `0:<index>`).
    pub index: u32,
    pub codec: String,
    /// The `language` tag (ISO 639-2 in Matroska and MP4), as written.
    pub language: String,
    /// The `title` tag.
    pub title: String,
}

/// What ffmpeg writes a text stream as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    SubRip,
    Ass,
    WebVtt,
}

/// The format a codec's text is written in; `None` for bitmap subtitles and unknown codecs.
#[must_use]
pub fn text_kind(codec: &str) -> Option<TextKind> {
    match codec {
        "ass" | "ssa" => Some(TextKind::Ass),
        "webvtt" => Some(TextKind::WebVtt),
        // ffmpeg's text decoders, all of which its SubRip encoder writes.
        "subrip" | "srt" | "mov_text" | "text" | "microdvd" | "subviewer" | "subviewer1" | "sami" | "realtext"
        | "mpl2" | "pjs" | "vplayer" | "jacosub" | "stl" => Some(TextKind::SubRip),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
}

#[derive(Debug, Deserialize)]
struct ProbeStream {
    index: u32,
    #[serde(default)]
    codec_name: String,
    #[serde(default)]
    tags: std::collections::HashMap<String, String>,
}

/// The subtitle streams of `path`.
///
/// # Errors
/// `ProbeTimeout`, `Io` when ffprobe cannot be started, `Damaged` when its answer is unreadable.
pub async fn subtitle_streams(prober: &Prober, path: &Path) -> Result<Vec<Stream>, Error> {
    let parsed: ProbeOutput = prober
        .ffprobe_json(
            &["-select_streams", "s", "-show_entries", "stream=index,codec_name:stream_tags=language,title"],
            path,
        )
        .await?;
    Ok(parsed
        .streams
        .into_iter()
        .map(|stream| {
            // Tag names vary in case between muxers (`language`, `LANGUAGE`).
            let tag = |name: &str| {
                stream.tags.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.clone())
            };
            Stream {
                index: stream.index,
                language: tag("language").unwrap_or_default(),
                title: tag("title").unwrap_or_default(),
                codec: stream.codec_name,
            }
        })
        .collect())
}

/// The text of stream `index` of `path`, written as `kind`.
///
/// # Errors
/// `ProbeTimeout`, `Io`, or `Damaged` with ffmpeg's complaint.
pub async fn extract(prober: &Prober, path: &Path, index: u32, kind: TextKind) -> Result<Vec<u8>, Error> {
    let (codec, format) = match kind {
        TextKind::SubRip => ("srt", "srt"),
        TextKind::Ass => ("ass", "ass"),
        TextKind::WebVtt => ("webvtt", "webvtt"),
    };
    let output = prober
        .run(Command::new(prober.ffmpeg()).args(["-v", "error", "-nostdin", "-i"]).arg(path).args([
            "-map",
            &format!("0:{index}"),
            "-c:s",
            codec,
            "-f",
            format,
            "pipe:1",
        ]))
        .await?;
    if !output.status.success() {
        return Err(Error::Damaged(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_bitmap_codecs() {
        assert_eq!(text_kind("subrip"), Some(TextKind::SubRip));
        assert_eq!(text_kind("mov_text"), Some(TextKind::SubRip));
        assert_eq!(text_kind("ass"), Some(TextKind::Ass));
        assert_eq!(text_kind("webvtt"), Some(TextKind::WebVtt));
        for bitmap in ["hdmv_pgs_subtitle", "dvd_subtitle", "dvb_subtitle", "xsub"] {
            assert_eq!(text_kind(bitmap), None);
        }
    }
}
