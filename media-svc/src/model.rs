//! The library's types as the rest of the service sees them (no protobuf, no entities).

use svc_kit::id::{RoomId, UserId};

/// Whether browsers play a file as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playability {
    /// H.264/VP8/VP9/AV1 video with AAC/Opus/Vorbis/MP3 audio in MP4 or WebM, or MP3.
    Browser,
    /// Stored; needs converting before browsers can play it.
    NeedsConversion,
}

/// Where an item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Found in the media directory.
    Directory,
    /// Uploaded by a person.
    Upload,
}

/// What ffprobe found out about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    pub duration_ms: i64,
    pub container: String,
    pub video_codec: String,
    pub audio_codec: String,
    pub width: i32,
    pub height: i32,
    pub playability: Playability,
    /// The MIME type it is served with.
    pub content_type: String,
    /// The file name extension that suits the container (`mp4`, `webm`, …), for uploads.
    pub extension: &'static str,
}

/// One item of the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaItem {
    pub media_item_id: String,
    pub title: String,
    /// Relative to the media directory, `/`-separated.
    pub relative_path: String,
    pub size_bytes: i64,
    pub modified_ms: i64,
    pub info: MediaInfo,
    pub source: Source,
    /// Empty for files of the media directory.
    pub added_by_user_id: String,
    /// The room it was uploaded in; empty when none.
    pub room_id: String,
    pub has_thumbnail: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An unfinished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub upload_id: String,
    pub user_id: String,
    pub room_id: String,
    pub file_name: String,
    pub length_bytes: u64,
    pub offset_bytes: u64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Who asks to see items: the media directory's files are everyone's; uploads are their
/// uploader's and, for an upload made in a room, that room's members'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// A session, with the room whose membership it has shown (if any).
    Person { user_id: UserId, member_of: Option<RoomId> },
    /// The operator: sees and may change everything.
    Admin,
}

/// Where an item's conversion to HLS stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionState {
    /// Waiting for a conversion slot.
    Queued,
    /// ffmpeg runs; nothing is playable yet.
    Converting,
    /// Still converting, and the start plays ("ready to start").
    Playable,
    /// Converted to the end.
    Complete,
    /// Failed; the item cannot be played.
    Failed,
}

impl ConversionState {
    /// Whether the conversion may still move (and is worth watching).
    #[must_use]
    pub fn is_unfinished(self) -> bool {
        matches!(self, Self::Queued | Self::Converting | Self::Playable)
    }

    /// Whether its HLS playlist can be handed out.
    #[must_use]
    pub fn is_playable(self) -> bool {
        matches!(self, Self::Playable | Self::Complete)
    }
}

/// An item's conversion to HLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub media_item_id: String,
    pub state: ConversionState,
    /// Milliseconds of the item converted so far.
    pub converted_ms: i64,
    /// Why it failed; empty otherwise.
    pub error: String,
    /// Conversions started for the item; also the token that tells a worker its run is still
    /// the current one.
    pub attempts: i32,
    pub updated_at: i64,
}
