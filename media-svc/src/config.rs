//! media-svc's settings, composed into the `xiaowo` binary's flags.

use std::path::PathBuf;
use std::time::Duration;

use svc_kit::server::parse_duration;

/// media-svc configuration.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "media-svc")]
pub struct Config {
    /// Database URL; defaults to `sqlite://<data dir>/media.db`.
    #[arg(id = "media-database-url", long = "media-database-url", env = "XIAOWO_MEDIA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The media directory: its files are indexed (at start and when they change) and uploads
    /// land in its `uploads/` folder. Default `<data dir>/media`.
    #[arg(id = "media-dir", long = "media-dir", env = "XIAOWO_MEDIA_DIR")]
    pub media_dir: Option<PathBuf>,
    /// Largest file one upload may carry (bytes; K, M, G, T suffixes are powers of 1024).
    #[arg(id = "media-max-file-size", long = "media-max-file-size", env = "XIAOWO_MEDIA_MAX_FILE_SIZE", default_value = "8G", value_parser = parse_bytes)]
    pub max_file_bytes: u64,
    /// What one session may keep in the library: its uploads plus its unfinished uploads.
    #[arg(id = "media-quota", long = "media-quota", env = "XIAOWO_MEDIA_QUOTA", default_value = "20G", value_parser = parse_bytes)]
    pub quota_bytes: u64,
    /// Unfinished uploads one session may have at once.
    #[arg(
        id = "media-max-concurrent-uploads",
        long = "media-max-concurrent-uploads",
        env = "XIAOWO_MEDIA_MAX_CONCURRENT_UPLOADS",
        default_value_t = 3
    )]
    pub max_concurrent_uploads: u32,
    /// Free space the media directory's disk must keep: an upload that would leave less is
    /// refused before its bytes are sent.
    #[arg(id = "media-min-free-disk", long = "media-min-free-disk", env = "XIAOWO_MEDIA_MIN_FREE_DISK", default_value = "1G", value_parser = parse_bytes)]
    pub min_free_disk_bytes: u64,
    /// An unfinished upload that receives nothing for this long is deleted (tus expiration).
    #[arg(id = "media-upload-expiry", long = "media-upload-expiry", env = "XIAOWO_MEDIA_UPLOAD_EXPIRY", default_value = "24h", value_parser = parse_duration)]
    pub upload_expiry: Duration,
    /// How long a signed playback URL stays valid (players ask for a new one before then).
    #[arg(id = "media-url-ttl", long = "media-url-ttl", env = "XIAOWO_MEDIA_URL_TTL", default_value = "30m", value_parser = parse_duration)]
    pub url_ttl: Duration,
    /// Longest an ffprobe or ffmpeg run may take before it is killed and the file refused.
    #[arg(id = "media-probe-timeout", long = "media-probe-timeout", env = "XIAOWO_MEDIA_PROBE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub probe_timeout: Duration,
    /// How often the media directory is looked at for new, changed and removed files.
    #[arg(id = "media-scan-interval", long = "media-scan-interval", env = "XIAOWO_MEDIA_SCAN_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub scan_interval: Duration,
    /// How often expired uploads are looked for.
    #[arg(id = "media-janitor-interval", long = "media-janitor-interval", env = "XIAOWO_MEDIA_JANITOR_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub janitor_interval: Duration,
    /// Conversions to HLS that run at once, each one `ffmpeg` under `nice`; 0 converts nothing
    /// here (items that need it stay queued for another instance).
    #[arg(
        id = "media-convert-jobs",
        long = "media-convert-jobs",
        env = "XIAOWO_MEDIA_CONVERT_JOBS",
        default_value_t = 1
    )]
    pub convert_jobs: u32,
    /// Paces each conversion to at most this many seconds of media per second (ffmpeg's
    /// `-readrate`), to bound the CPU it takes; 0 converts as fast as the machine can.
    #[arg(id = "media-convert-readrate", long = "media-convert-readrate", env = "XIAOWO_MEDIA_CONVERT_READRATE", default_value_t = 0.0, value_parser = parse_readrate)]
    pub convert_readrate: f64,
    /// The ffprobe program (Debian package `ffmpeg`).
    #[arg(id = "media-ffprobe", long = "media-ffprobe", env = "XIAOWO_MEDIA_FFPROBE", default_value = "ffprobe")]
    pub ffprobe: PathBuf,
    /// The ffmpeg program, for thumbnails and conversions.
    #[arg(id = "media-ffmpeg", long = "media-ffmpeg", env = "XIAOWO_MEDIA_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// Largest subtitle file accepted (bytes; K and M suffixes). A limit above
    /// `--max-message-bytes` raises media-svc's own message limit to match; behind nginx,
    /// `client_max_body_size` (1m) applies too.
    #[arg(id = "media-subtitle-max-size", long = "media-subtitle-max-size", env = "XIAOWO_MEDIA_SUBTITLE_MAX_SIZE", default_value = "900K", value_parser = parse_bytes)]
    pub subtitle_max_bytes: u64,
    /// Most cues a subtitle file may have.
    #[arg(
        id = "media-subtitle-max-cues",
        long = "media-subtitle-max-cues",
        env = "XIAOWO_MEDIA_SUBTITLE_MAX_CUES",
        default_value_t = 20_000
    )]
    pub subtitle_max_cues: usize,
    /// How long a validated session token is trusted before asking session-svc again.
    #[arg(id = "media-session-cache-ttl", long = "media-session-cache-ttl", env = "XIAOWO_MEDIA_SESSION_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub session_cache_ttl: Duration,
    /// How long room-svc's answer about a member is trusted (kept longer while its event
    /// stream is live).
    #[arg(id = "media-access-cache-ttl", long = "media-access-cache-ttl", env = "XIAOWO_MEDIA_ACCESS_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub access_cache_ttl: Duration,
}

/// Parses `1048576`, `512K`, `100M`, `8G`, `2T` (powers of 1024; an optional `B` or `iB`).
///
/// # Errors
/// A message naming the expected form.
pub fn parse_bytes(value: &str) -> Result<u64, String> {
    let text = value.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number: u64 =
        text[..digits].parse().map_err(|_| format!("invalid size {value:?}: expected e.g. 500M or 8G"))?;
    let unit = text[digits..].trim().trim_end_matches("iB").trim_end_matches('B');
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("invalid size unit in {value:?}: use K, M, G or T")),
    };
    number.checked_mul(scale).ok_or_else(|| format!("size {value:?} is too large"))
}

/// Parses a conversion pace: 0 (none), or a speed from 0.1 to 100 times real time.
///
/// # Errors
/// A message naming the expected range.
pub fn parse_readrate(value: &str) -> Result<f64, String> {
    let rate: f64 = value.trim().parse().map_err(|_| format!("invalid pace {value:?}: expected e.g. 1.5, or 0"))?;
    if rate == 0.0 || (0.1..=100.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("pace {value:?} out of range: 0, or 0.1 to 100"))
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_bytes, parse_readrate};

    #[test]
    fn paces() {
        assert_eq!(parse_readrate("0"), Ok(0.0));
        assert_eq!(parse_readrate("1.5"), Ok(1.5));
        assert!(parse_readrate("-1").is_err());
        assert!(parse_readrate("0.01").is_err());
        assert!(parse_readrate("NaN").is_err());
        assert!(parse_readrate("fast").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("8G"), Ok(8 << 30));
        assert_eq!(parse_bytes("512KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("100 MB"), Ok(100 << 20));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5P").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }
}
