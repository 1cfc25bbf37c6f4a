//! Reading a running conversion: ffmpeg's `-progress` reports (blocks of `key=value` lines
//! ending with `progress=continue` or `progress=end`) and the playlist it rewrites after every
//! segment.

/// One finished `-progress` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// How far the output has got, in milliseconds of the media.
    pub converted_ms: i64,
    /// ffmpeg said this is its last report.
    pub last: bool,
}

/// Collects `-progress` lines into reports.
#[derive(Debug, Default)]
pub struct ProgressReader {
    out_time_us: Option<i64>,
}

impl ProgressReader {
    /// Takes one line; a report when it ends a block.
    pub fn line(&mut self, line: &str) -> Option<Report> {
        let (key, value) = line.trim().split_once('=')?;
        match key {
            // `out_time_ms` is microseconds too (an old ffmpeg misnomer); `out_time_us` wins.
            "out_time_us" | "out_time_ms" => {
                if let Ok(micros) = value.trim().parse::<i64>()
                    && (key == "out_time_us" || self.out_time_us.is_none())
                {
                    self.out_time_us = Some(micros.max(0));
                }
                None
            }
            "progress" => {
                let converted_ms = self.out_time_us.take().unwrap_or(0) / 1000;
                Some(Report { converted_ms, last: value.trim() == "end" })
            }
            _ => None,
        }
    }
}

/// What a playlist lists so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlaylistFacts {
    pub segments: usize,
    /// The listed segments' total length.
    pub seconds: f64,
    /// It ends with `#EXT-X-ENDLIST`: complete.
    pub ended: bool,
}

/// Reads an HLS media playlist's segment list.
#[must_use]
pub fn read_playlist(text: &str) -> PlaylistFacts {
    let mut facts = PlaylistFacts::default();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            facts.segments += 1;
            let length = rest.split(',').next().and_then(|seconds| seconds.trim().parse::<f64>().ok());
            facts.seconds += length.filter(|seconds| seconds.is_finite() && *seconds > 0.0).unwrap_or(0.0);
        } else if line == "#EXT-X-ENDLIST" {
            facts.ended = true;
        }
    }
    facts
}

/// The playlist as served: with `#EXT-X-START:TIME-OFFSET=0` after its first line, so that a
/// player of a playlist that is still growing (which players treat as live) starts at the
/// beginning rather than at its newest segment.
#[must_use]
pub fn start_at_beginning(text: &str) -> String {
    if text.contains("#EXT-X-START:") {
        return text.to_owned();
    }
    match text.split_once('\n') {
        Some((first, rest)) => format!("{first}\n#EXT-X-START:TIME-OFFSET=0,PRECISE=YES\n{rest}"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_blocks_become_reports() {
        let mut reader = ProgressReader::default();
        let mut reports = Vec::new();
        let lines = "frame=10\nout_time_us=N/A\nout_time_ms=400000\nprogress=continue\nframe=50\n\
                     out_time_us=2040000\nout_time_ms=2040000\nout_time=00:00:02.040000\nspeed=1.2x\n\
                     progress=continue\nout_time_us=-5\nprogress=continue\nout_time_us=30023832\nprogress=end\n";
        for line in lines.lines() {
            reports.extend(reader.line(line));
        }
        assert_eq!(
            reports,
            [
                Report { converted_ms: 400, last: false },
                Report { converted_ms: 2040, last: false },
                Report { converted_ms: 0, last: false },
                Report { converted_ms: 30_023, last: true },
            ]
        );
    }

    const GROWING: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:EVENT\n\
                           #EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.000000,\nseg00000.m4s\n#EXTINF:1.960000,\nseg00001.m4s\n";

    #[test]
    fn playlists_are_counted_and_start_at_the_beginning() {
        let facts = read_playlist(GROWING);
        assert_eq!(facts.segments, 2);
        assert!((facts.seconds - 3.96).abs() < 1e-9);
        assert!(!facts.ended);
        assert!(read_playlist(&format!("{GROWING}#EXT-X-ENDLIST\n")).ended);
        assert_eq!(read_playlist("").segments, 0);
        let served = start_at_beginning(GROWING);
        assert!(served.starts_with("#EXTM3U\n#EXT-X-START:TIME-OFFSET=0,PRECISE=YES\n#EXT-X-VERSION:7\n"));
        assert_eq!(start_at_beginning(&served), served);
    }
}
