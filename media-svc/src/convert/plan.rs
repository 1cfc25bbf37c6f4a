//! What ffmpeg is asked to do for one item: H.264 video and AAC audio in fMP4 HLS segments of
//! two seconds, one rendition no larger than the source (and no larger than 1080p). A stream a
//! browser already decodes is copied instead of encoded again: H.264 in 8-bit 4:2:0 with a
//! profile browsers know, AAC in mono or stereo. The playlist is an EVENT playlist that ffmpeg
//! rewrites (atomically) after every segment and ends with ENDLIST when complete.

use std::ffi::OsString;
use std::path::Path;

use crate::probe::{SourceStream, SourceStreams};

/// Seconds per segment, and the keyframe interval of encoded video: short segments make the
/// first one (and a fast start) early.
pub const SEGMENT_SECONDS: u32 = 2;
/// The playlist's file name in an item's HLS folder.
pub const PLAYLIST: &str = "index.m3u8";
/// The fMP4 initialisation segment's file name.
pub const INIT_SEGMENT: &str = "init.mp4";
/// The longest side and the shortest side of the largest picture made (1080p, either way up).
const MAX_LONG_SIDE: i32 = 1920;
const MAX_SHORT_SIDE: i32 = 1080;
/// H.264 profiles every browser decodes (with 8-bit 4:2:0 pictures).
const BROWSER_H264_PROFILES: &[&str] = &["Baseline", "Constrained Baseline", "Main", "High"];

/// What happens to the video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoPlan {
    /// Already H.264 that browsers decode: copied as it is.
    Copy { index: i32 },
    /// Encoded with libx264 at this size (the source's, or smaller), capped at `max_kbps`.
    Encode { index: i32, width: i32, height: i32, scale: bool, max_kbps: u32 },
}

/// What happens to the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioPlan {
    /// AAC in mono or stereo: copied.
    Copy { index: i32 },
    /// Encoded to stereo AAC.
    Encode { index: i32 },
}

/// The conversion of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub video: Option<VideoPlan>,
    pub audio: Option<AudioPlan>,
}

/// `value` rounded down to an even number (H.264 in 4:2:0 needs even sizes), at least 2.
fn even(value: f64) -> i32 {
    #[allow(clippy::cast_possible_truncation, reason = "picture sizes are small positive numbers")]
    let whole = value.floor() as i32;
    (whole - whole % 2).max(2)
}

/// The picture size made from `width`×`height`: the same, or shrunk to fit 1080p; never larger.
fn rendition_size(width: i32, height: i32) -> (i32, i32) {
    if width <= 0 || height <= 0 {
        return (width, height);
    }
    let (long, short) = (width.max(height), width.min(height));
    let fit = (f64::from(MAX_LONG_SIDE) / f64::from(long)).min(f64::from(MAX_SHORT_SIDE) / f64::from(short)).min(1.0);
    (even(f64::from(width) * fit), even(f64::from(height) * fit))
}

/// A bit-rate ceiling that suits the picture's size (its shorter side), in kbit/s.
fn max_kbps(width: i32, height: i32) -> u32 {
    match width.min(height) {
        ..=360 => 1_200,
        361..=480 => 2_000,
        481..=720 => 4_000,
        _ => 7_000,
    }
}

fn browser_h264(stream: &SourceStream) -> bool {
    stream.codec == "h264"
        && matches!(stream.pix_fmt.as_str(), "yuv420p" | "yuvj420p")
        && (stream.profile.is_empty() || BROWSER_H264_PROFILES.contains(&stream.profile.as_str()))
}

impl Plan {
    /// The plan for a file with these streams; `None` when it has neither video nor audio.
    #[must_use]
    pub fn for_source(streams: &SourceStreams) -> Option<Self> {
        let video = streams.video.as_ref().map(|stream| {
            if browser_h264(stream) {
                VideoPlan::Copy { index: stream.index }
            } else {
                let (width, height) = rendition_size(stream.width, stream.height);
                let scale = width > 0 && (width, height) != (stream.width, stream.height);
                VideoPlan::Encode { index: stream.index, width, height, scale, max_kbps: max_kbps(width, height) }
            }
        });
        let audio = streams.audio.as_ref().map(|stream| {
            if stream.codec == "aac" && (1..=2).contains(&stream.channels) {
                AudioPlan::Copy { index: stream.index }
            } else {
                AudioPlan::Encode { index: stream.index }
            }
        });
        (video.is_some() || audio.is_some()).then_some(Self { video, audio })
    }

    /// Whether the video is copied rather than encoded.
    #[must_use]
    pub fn copies_video(&self) -> bool {
        matches!(self.video, Some(VideoPlan::Copy { .. }))
    }

    /// ffmpeg's arguments (after the program name): read `source` (paced to `readrate` times
    /// real time when above 0), write the HLS folder `out_dir`, report progress on stdout.
    #[must_use]
    pub fn ffmpeg_args(&self, source: &Path, out_dir: &Path, readrate: f64) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        push(&[
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostats",
            "-progress",
            "pipe:1",
            "-stats_period",
            "0.5",
        ]);
        if readrate > 0.0 {
            push(&["-readrate", &readrate.to_string()]);
        }
        push(&["-i"]);
        args.push(source.as_os_str().to_owned());
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        if let Some(VideoPlan::Copy { index } | VideoPlan::Encode { index, .. }) = &self.video {
            push(&["-map", &format!("0:{index}")]);
        }
        if let Some(AudioPlan::Copy { index } | AudioPlan::Encode { index }) = &self.audio {
            push(&["-map", &format!("0:{index}")]);
        }
        push(&["-map_metadata", "-1", "-map_chapters", "-1"]);
        match &self.video {
            Some(VideoPlan::Copy { .. }) => push(&["-c:v", "copy"]),
            Some(VideoPlan::Encode { width, height, scale, max_kbps, .. }) => {
                push(&[
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                    "-crf",
                    "21",
                    "-profile:v",
                    "high",
                    "-pix_fmt",
                    "yuv420p",
                ]);
                push(&["-maxrate", &format!("{max_kbps}k"), "-bufsize", &format!("{}k", max_kbps * 2)]);
                if *scale {
                    push(&["-vf", &format!("scale={width}:{height}")]);
                }
                // A keyframe at every segment boundary: segments of exactly SEGMENT_SECONDS.
                push(&["-force_key_frames", &format!("expr:gte(t,n_forced*{SEGMENT_SECONDS})")]);
            }
            None => {}
        }
        match &self.audio {
            Some(AudioPlan::Copy { .. }) => push(&["-c:a", "copy"]),
            Some(AudioPlan::Encode { .. }) => push(&["-c:a", "aac", "-b:a", "160k", "-ac", "2"]),
            None => {}
        }
        push(&["-f", "hls", "-hls_time", &SEGMENT_SECONDS.to_string(), "-hls_playlist_type", "event"]);
        push(&["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", INIT_SEGMENT]);
        push(&["-hls_flags", "independent_segments+temp_file", "-hls_segment_filename"]);
        args.push(out_dir.join("seg%05d.m4s").into_os_string());
        args.push(out_dir.join(PLAYLIST).into_os_string());
        args
    }
}

/// Whether `name` is a file an item's HLS folder serves: the playlist, the initialisation
/// segment or a media segment (`seg` and digits, `.m4s`).
#[must_use]
pub fn is_served_name(name: &str) -> bool {
    name == PLAYLIST
        || name == INIT_SEGMENT
        || name
            .strip_prefix("seg")
            .and_then(|rest| rest.strip_suffix(".m4s"))
            .is_some_and(|digits| !digits.is_empty() && digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(index: i32, codec: &str, profile: &str, pix_fmt: &str, size: (i32, i32), channels: i32) -> SourceStream {
        SourceStream {
            index,
            codec: codec.to_owned(),
            profile: profile.to_owned(),
            pix_fmt: pix_fmt.to_owned(),
            width: size.0,
            height: size.1,
            channels,
        }
    }

    fn args_text(plan: &Plan, readrate: f64) -> String {
        plan.ffmpeg_args(Path::new("/m/in.mkv"), Path::new("/m/out"), readrate)
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn hevc_and_ac3_are_both_encoded_at_the_source_size() {
        let streams = SourceStreams {
            video: Some(stream(0, "hevc", "Main", "yuv420p", (320, 180), 0)),
            audio: Some(stream(1, "ac3", "", "", (0, 0), 6)),
        };
        let plan = Plan::for_source(&streams).unwrap();
        assert_eq!(
            plan.video,
            Some(VideoPlan::Encode { index: 0, width: 320, height: 180, scale: false, max_kbps: 1_200 })
        );
        assert_eq!(plan.audio, Some(AudioPlan::Encode { index: 1 }));
        let args = args_text(&plan, 0.0);
        assert!(args.contains("-map 0:0 -map 0:1"), "{args}");
        assert!(args.contains("-c:v libx264") && args.contains("-c:a aac -b:a 160k -ac 2"), "{args}");
        assert!(args.contains("-force_key_frames expr:gte(t,n_forced*2)"), "{args}");
        assert!(args.contains("-hls_playlist_type event") && args.contains("-hls_segment_type fmp4"), "{args}");
        assert!(args.ends_with("/m/out/seg%05d.m4s /m/out/index.m3u8"), "{args}");
        assert!(!args.contains("-vf") && !args.contains("-readrate"), "{args}");
        assert!(args_text(&plan, 1.5).contains("-readrate 1.5 -i /m/in.mkv"));
    }

    #[test]
    fn browser_h264_is_copied_and_only_the_audio_converted() {
        let streams = SourceStreams {
            video: Some(stream(1, "h264", "High", "yuv420p", (1920, 1080), 0)),
            audio: Some(stream(2, "ac3", "", "", (0, 0), 2)),
        };
        let plan = Plan::for_source(&streams).unwrap();
        assert!(plan.copies_video());
        let args = args_text(&plan, 0.0);
        assert!(args.contains("-c:v copy -c:a aac"), "{args}");
        assert!(!args.contains("libx264") && !args.contains("force_key_frames"), "{args}");
        // 10-bit and 4:4:4 H.264 are not for browsers; AAC stereo is copied.
        let high10 = SourceStreams {
            video: Some(stream(0, "h264", "High 10", "yuv420p10le", (1280, 720), 0)),
            audio: Some(stream(1, "aac", "LC", "", (0, 0), 2)),
        };
        let plan = Plan::for_source(&high10).unwrap();
        assert!(!plan.copies_video());
        assert_eq!(plan.audio, Some(AudioPlan::Copy { index: 1 }));
    }

    #[test]
    fn pictures_are_shrunk_to_1080p_and_never_enlarged() {
        assert_eq!(rendition_size(3840, 2160), (1920, 1080));
        assert_eq!(rendition_size(1080, 1920), (1080, 1920));
        assert_eq!(rendition_size(2160, 3840), (1080, 1920));
        assert_eq!(rendition_size(640, 360), (640, 360));
        assert_eq!(rendition_size(321, 181), (320, 180));
        assert_eq!(rendition_size(4096, 1716), (1920, 804));
        let uhd =
            SourceStreams { video: Some(stream(0, "hevc", "Main 10", "yuv420p10le", (3840, 2160), 0)), audio: None };
        let plan = Plan::for_source(&uhd).unwrap();
        assert_eq!(
            plan.video,
            Some(VideoPlan::Encode { index: 0, width: 1920, height: 1080, scale: true, max_kbps: 7_000 })
        );
        let args = args_text(&plan, 0.0);
        assert!(args.contains("-vf scale=1920:1080") && !args.contains("-c:a"), "{args}");
        assert_eq!(Plan::for_source(&SourceStreams::default()), None);
    }

    #[test]
    fn only_the_folder_s_own_names_are_served() {
        for name in ["index.m3u8", "init.mp4", "seg00000.m4s", "seg123456.m4s"] {
            assert!(is_served_name(name), "{name}");
        }
        for name in ["", "seg.m4s", "seg0.m4s.tmp", "index.m3u8.tmp", "../index.m3u8", "seg1/../x.m4s", "segx.m4s"] {
            assert!(!is_served_name(name), "{name}");
        }
    }
}
