//! ffprobe and ffmpeg, run with a deadline: what a file is (refusing what is not video or
//! audio, or is cut short), whether browsers play it as it is, and a thumbnail.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use crate::Error;
use crate::model::{MediaInfo, Playability};

/// Runs the probing programs.
#[derive(Debug, Clone)]
pub struct Prober {
    ffprobe: PathBuf,
    ffmpeg: PathBuf,
    timeout: Duration,
}

#[derive(Debug, Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Debug, Deserialize)]
struct Stream {
    #[serde(default)]
    index: i32,
    #[serde(default)]
    codec_type: String,
    #[serde(default)]
    codec_name: String,
    #[serde(default)]
    width: Option<i32>,
    #[serde(default)]
    height: Option<i32>,
    #[serde(default)]
    pix_fmt: Option<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    channels: Option<i32>,
    #[serde(default)]
    bit_rate: Option<String>,
    #[serde(default)]
    disposition: Option<Disposition>,
}

#[derive(Debug, Deserialize)]
struct Disposition {
    #[serde(default)]
    attached_pic: i32,
}

#[derive(Debug, Deserialize)]
struct Format {
    #[serde(default)]
    format_name: String,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    size: Option<String>,
}

/// Demuxers that read pictures or text, not video: a file they recognise is not media.
const NOT_MEDIA_FORMATS: &[&str] =
    &["image2", "tty", "ico", "gif", "webp", "svg", "bin", "lrc", "srt", "webvtt", "ass"];
/// Picture codecs: a "video" stream in one of these is a still image.
const PICTURE_CODECS: &[&str] = &["png", "mjpeg", "bmp", "gif", "webp", "tiff", "ansi", "bintext", "xbin", "idf"];

impl Prober {
    /// Runs `ffprobe` and `ffmpeg` (paths or names on `PATH`), killing any run past `timeout`.
    #[must_use]
    pub fn new(ffprobe: PathBuf, ffmpeg: PathBuf, timeout: Duration) -> Self {
        Self { ffprobe, ffmpeg, timeout }
    }

    /// The ffmpeg program.
    pub(crate) fn ffmpeg(&self) -> &Path {
        &self.ffmpeg
    }

    /// Runs `command` with piped output under the deadline.
    pub(crate) async fn run(&self, command: &mut Command) -> Result<std::process::Output, Error> {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        match tokio::time::timeout(self.timeout, command.output()).await {
            Ok(output) => Ok(output?),
            // Dropping the future kills the child (kill_on_drop).
            Err(_) => Err(Error::ProbeTimeout),
        }
    }

    /// What `path` holds.
    ///
    /// # Errors
    /// `NotMedia` for a file that is neither video nor audio, `Damaged` for media that cannot
    /// be read through, `ProbeTimeout`, or `Io` when ffprobe cannot be started.
    pub async fn probe(&self, path: &Path) -> Result<MediaInfo, Error> {
        let output = self
            .run(
                Command::new(&self.ffprobe)
                    .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams", "-i"])
                    .arg(path),
            )
            .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            // ffprobe names the demuxer that recognised the file before its complaint
            // ("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x…] moov atom not found"): a media file cut short.
            // Without one nothing recognised it.
            let recognised = stderr.lines().any(|line| line.starts_with('[') && line.contains(" @ "));
            return Err(if recognised { Error::Damaged(stderr.trim().to_owned()) } else { Error::NotMedia });
        }
        let parsed: ProbeOutput = serde_json::from_slice(&output.stdout)
            .map_err(|error| Error::Damaged(format!("unreadable ffprobe output: {error}")))?;
        classify(parsed, path)
    }

    /// ffprobe's JSON answer about `path` with these `-show_…`/`-select_…` arguments.
    ///
    /// # Errors
    /// `Damaged` when ffprobe cannot read the file (or its answer), `ProbeTimeout`, or `Io`.
    pub(crate) async fn ffprobe_json<T: serde::de::DeserializeOwned>(
        &self,
        args: &[&str],
        path: &Path,
    ) -> Result<T, Error> {
        let output = self
            .run(
                Command::new(&self.ffprobe)
                    .args(["-v", "error", "-print_format", "json"])
                    .args(args)
                    .arg("-i")
                    .arg(path),
            )
            .await?;
        if !output.status.success() {
            return Err(Error::Damaged(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|error| Error::Damaged(format!("unreadable ffprobe output: {error}")))
    }

    /// The main video and audio streams of `path`, for planning its conversion.
    ///
    /// # Errors
    /// `Damaged` when ffprobe cannot read the file, `ProbeTimeout`, or `Io`.
    pub async fn source_streams(&self, path: &Path) -> Result<SourceStreams, Error> {
        let parsed: ProbeOutput = self.ffprobe_json(&["-show_streams"], path).await?;
        let (video, audio) = main_streams(&parsed.streams);
        Ok(SourceStreams { video: video.map(SourceStream::from), audio: audio.map(SourceStream::from) })
    }

    /// Writes one frame of `path`, 320 pixels wide, as a JPEG to `out`.
    ///
    /// # Errors
    /// `ProbeTimeout`, `Io`, or `Damaged` when ffmpeg made no picture.
    pub async fn thumbnail(&self, path: &Path, duration_ms: i64, out: &Path) -> Result<(), Error> {
        // A frame a little way in: the first is often black.
        let at_ms = (duration_ms / 10).clamp(0, 10_000);
        let at = format!("{}.{:03}", at_ms / 1000, at_ms % 1000);
        let partial = out.with_extension("jpg.tmp");
        let output = self
            .run(
                Command::new(&self.ffmpeg)
                    .args(["-v", "error", "-y", "-ss", &at, "-i"])
                    .arg(path)
                    .args(["-map", "0:v:0", "-frames:v", "1", "-vf", "scale=320:-2", "-q:v", "5", "-f", "mjpeg"])
                    .arg(&partial),
            )
            .await?;
        let made = tokio::fs::metadata(&partial).await.is_ok_and(|meta| meta.len() > 0);
        if !output.status.success() || !made {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(Error::Damaged(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
        }
        tokio::fs::rename(&partial, out).await?;
        Ok(())
    }
}

/// The streams that make the media: the first video stream that is not a picture (cover art)
/// and the first audio stream.
fn main_streams(streams: &[Stream]) -> (Option<&Stream>, Option<&Stream>) {
    let is_picture = |stream: &&Stream| {
        PICTURE_CODECS.contains(&stream.codec_name.as_str())
            || stream.disposition.as_ref().is_some_and(|disposition| disposition.attached_pic != 0)
    };
    let video = streams.iter().filter(|stream| stream.codec_type == "video").find(|stream| !is_picture(stream));
    let audio = streams.iter().find(|stream| stream.codec_type == "audio");
    (video, audio)
}

/// What a conversion needs to know of a file's main streams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStreams {
    pub video: Option<SourceStream>,
    pub audio: Option<SourceStream>,
}

/// One stream, as ffprobe describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStream {
    /// Its index in the file (ffmpeg's `-map 0:<index>`).
    pub index: i32,
    pub codec: String,
    /// `High`, `Main 10`, `LC`, …; empty when unknown.
    pub profile: String,
    pub pix_fmt: String,
    pub width: i32,
    pub height: i32,
    pub channels: i32,
}

impl From<&Stream> for SourceStream {
    fn from(stream: &Stream) -> Self {
        Self {
            index: stream.index,
            codec: stream.codec_name.clone(),
            profile: stream.profile.clone().unwrap_or_default(),
            pix_fmt: stream.pix_fmt.clone().unwrap_or_default(),
            width: stream.width.unwrap_or(0),
            height: stream.height.unwrap_or(0),
            channels: stream.channels.unwrap_or(0),
        }
    }
}

fn parse_number(text: Option<&str>) -> Option<f64> {
    text.and_then(|text| text.trim().parse::<f64>().ok()).filter(|value| value.is_finite() && *value >= 0.0)
}

#[allow(clippy::cast_possible_truncation)]
fn classify(parsed: ProbeOutput, path: &Path) -> Result<MediaInfo, Error> {
    let ProbeOutput { streams, format } = parsed;
    let format = format.ok_or(Error::NotMedia)?;
    let format_names: Vec<&str> = format.format_name.split(',').collect();
    if format_names.iter().any(|name| NOT_MEDIA_FORMATS.contains(name) || name.ends_with("_pipe")) {
        return Err(Error::NotMedia);
    }
    let (video, audio) = main_streams(&streams);
    if video.is_none() && audio.is_none() {
        return Err(Error::NotMedia);
    }
    let duration_s = parse_number(format.duration.as_deref()).unwrap_or(0.0);
    if duration_s <= 0.0 {
        return Err(Error::Damaged("no duration".to_owned()));
    }
    // A file whose streams say they hold more data than the file has was cut short (an MP4
    // whose index sits at the front reads fine until the missing part).
    let size = parse_number(format.size.as_deref()).unwrap_or(0.0);
    let stream_bits_per_second: f64 =
        streams.iter().filter_map(|stream| parse_number(stream.bit_rate.as_deref())).sum();
    if size > 0.0 && stream_bits_per_second > 0.0 && stream_bits_per_second * duration_s / 8.0 > size * 1.25 {
        return Err(Error::Damaged(format!(
            "streams need {:.0} bytes, the file has {size:.0}",
            stream_bits_per_second * duration_s / 8.0
        )));
    }

    let video_codec = video.map(|stream| stream.codec_name.clone()).unwrap_or_default();
    let audio_codec = audio.map(|stream| stream.codec_name.clone()).unwrap_or_default();
    // Browsers decode 8-bit 4:2:0 H.264 only.
    let eight_bit = video
        .and_then(|stream| stream.pix_fmt.as_deref())
        .is_none_or(|pix_fmt| matches!(pix_fmt, "yuv420p" | "yuvj420p"));
    let extension = path.extension().and_then(|ext| ext.to_str()).unwrap_or_default().to_ascii_lowercase();
    let is_mp4 = format_names.contains(&"mp4");
    let is_matroska = format_names.contains(&"matroska");
    let is_mp3 = format_names == ["mp3"];
    let video_ok = |allowed: &[&str]| video.is_none() || allowed.contains(&video_codec.as_str());
    let audio_ok = |allowed: &[&str]| audio.is_none() || allowed.contains(&audio_codec.as_str());
    let has_video = video.is_some();
    let (playable, content_type, extension): (bool, &str, &'static str) = if is_mp4 {
        let playable = video_ok(&["h264", "vp9", "av1"])
            && (video_codec != "h264" || eight_bit)
            && audio_ok(&["aac", "mp3", "opus", "flac"]);
        (playable, if has_video { "video/mp4" } else { "audio/mp4" }, "mp4")
    } else if is_matroska {
        // WebM is Matroska with only these codecs; Chromium checks the document type too, which
        // ffprobe does not show, so an `.mkv` name keeps it out.
        let webm = video_ok(&["vp8", "vp9", "av1"]) && audio_ok(&["opus", "vorbis"]) && extension != "mkv";
        if webm {
            (true, if has_video { "video/webm" } else { "audio/webm" }, "webm")
        } else {
            (false, "video/x-matroska", "mkv")
        }
    } else if is_mp3 {
        (audio_codec == "mp3", "audio/mpeg", "mp3")
    } else {
        let (content_type, extension) = match format_names.first().copied().unwrap_or_default() {
            "avi" => ("video/x-msvideo", "avi"),
            "mpegts" => ("video/mp2t", "ts"),
            "ogg" => ("video/ogg", "ogv"),
            "flv" => ("video/x-flv", "flv"),
            "asf" => ("video/x-ms-asf", "wmv"),
            "mpeg" => ("video/mpeg", "mpg"),
            "wav" => ("audio/wav", "wav"),
            "flac" => ("audio/flac", "flac"),
            _ => ("application/octet-stream", "bin"),
        };
        (false, content_type, extension)
    };
    Ok(MediaInfo {
        duration_ms: (duration_s * 1000.0).round() as i64,
        container: format.format_name,
        video_codec,
        audio_codec,
        width: video.and_then(|stream| stream.width).unwrap_or(0),
        height: video.and_then(|stream| stream.height).unwrap_or(0),
        playability: if playable { Playability::Browser } else { Playability::NeedsConversion },
        content_type: content_type.to_owned(),
        extension,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, name: &str) -> Result<MediaInfo, Error> {
        classify(serde_json::from_str(json).unwrap(), Path::new(name))
    }

    const MP4: &str = r#"{"streams":[{"codec_type":"video","codec_name":"h264","width":320,"height":180,"pix_fmt":"yuv420p","bit_rate":"100000"},{"codec_type":"audio","codec_name":"aac","bit_rate":"64000"}],"format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"60.0","size":"1300000"}}"#;

    #[test]
    fn browser_mp4_and_webm() {
        let info = parse(MP4, "a.mp4").unwrap();
        assert_eq!(info.playability, Playability::Browser);
        assert_eq!(info.content_type, "video/mp4");
        assert_eq!((info.duration_ms, info.width, info.height), (60_000, 320, 180));
        let webm = r#"{"streams":[{"codec_type":"video","codec_name":"vp8"}],"format":{"format_name":"matroska,webm","duration":"3"}}"#;
        assert_eq!(parse(webm, "a.webm").unwrap().playability, Playability::Browser);
        assert_eq!(parse(webm, "a.mkv").unwrap().playability, Playability::NeedsConversion);
    }

    #[test]
    fn other_codecs_need_conversion() {
        let hevc = MP4.replace("h264", "hevc");
        assert_eq!(parse(&hevc, "a.mp4").unwrap().playability, Playability::NeedsConversion);
        let ten_bit = MP4.replace("yuv420p", "yuv420p10le");
        assert_eq!(parse(&ten_bit, "a.mp4").unwrap().playability, Playability::NeedsConversion);
        let avi = r#"{"streams":[{"codec_type":"video","codec_name":"mpeg4"}],"format":{"format_name":"avi","duration":"3"}}"#;
        let info = parse(avi, "a.avi").unwrap();
        assert_eq!((info.playability, info.extension), (Playability::NeedsConversion, "avi"));
    }

    #[test]
    fn pictures_and_text_are_not_media() {
        let png = r#"{"streams":[{"codec_type":"video","codec_name":"png"}],"format":{"format_name":"png_pipe","duration":"0.04"}}"#;
        assert!(matches!(parse(png, "a.mp4"), Err(Error::NotMedia)));
        let tty =
            r#"{"streams":[{"codec_type":"video","codec_name":"ansi"}],"format":{"format_name":"tty","duration":"1"}}"#;
        assert!(matches!(parse(tty, "a.mp4"), Err(Error::NotMedia)));
        assert!(matches!(parse(r#"{"streams":[],"format":{"format_name":"mp3"}}"#, "a.mp3"), Err(Error::NotMedia)));
    }

    #[test]
    fn a_file_shorter_than_its_streams_is_damaged() {
        let cut = MP4.replace("1300000", "400000");
        assert!(matches!(parse(&cut, "a.mp4"), Err(Error::Damaged(_))));
    }
}
