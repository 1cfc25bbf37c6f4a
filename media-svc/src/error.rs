//! media-svc's one error type, with its two exhaustive mappings: to a gRPC status for the
//! library RPCs, and to an HTTP answer for uploads and file serving.

use http::StatusCode;
use svc_kit::auth::AuthError;
use svc_kit::peer::room::RoomAccessError;
use svc_kit::status::Violation;

/// Everything a media-svc call or request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad request fields.
    #[error("invalid argument")]
    InvalidArgument(Vec<Violation>),
    /// A plain HTTP request (or a peer's answer) without a valid session, or session-svc
    /// out of reach: the guard's own refusal, answered in HTTP's terms on those routes.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No such item or upload, or one the caller may not see.
    #[error("not found")]
    NotFound,
    /// room-svc does not know the room.
    #[error("room not found")]
    RoomNotFound,
    /// Only the uploader (or an operator) may change the item.
    #[error("not the uploader")]
    NotOwner,
    /// The caller is not a member of the room.
    #[error("not a member of the room")]
    NotMember,
    /// The room's timeline and queue do not hold the item.
    #[error("the room does not play this item")]
    NotInRoom,
    /// Browsers cannot play the item as it is, and its conversion has not made its start
    /// playable yet.
    #[error("the item needs conversion")]
    NeedsConversion,
    /// The item's conversion failed (the reason).
    #[error("conversion failed: {0}")]
    ConversionFailed(String),
    /// A signed URL that is missing, forged, expired or another user's.
    #[error("playback URL refused: {0}")]
    UrlRefused(&'static str),
    /// A tus request without `Tus-Resumable: 1.0.0`.
    #[error("unsupported tus version")]
    UnsupportedTusVersion,
    /// A malformed upload request (headers missing or unreadable).
    #[error("bad upload request: {0}")]
    BadUploadRequest(&'static str),
    /// A PATCH whose body is not `application/offset+octet-stream`.
    #[error("wrong content type")]
    WrongContentType,
    /// A zero-byte file.
    #[error("the file is empty")]
    EmptyFile,
    /// Over the largest file accepted.
    #[error("file larger than {max_bytes} bytes")]
    TooLarge { max_bytes: u64 },
    /// The upload would take the caller past their quota.
    #[error("quota of {quota_bytes} bytes exceeded ({used_bytes} used)")]
    QuotaExceeded { quota_bytes: u64, used_bytes: u64 },
    /// The caller has as many unfinished uploads as allowed.
    #[error("at most {max} uploads at once")]
    TooManyUploads { max: u32 },
    /// The media directory's disk would fall under the free-space floor.
    #[error("not enough free disk space")]
    DiskFull,
    /// A PATCH at another offset than the stored one.
    #[error("upload offset is {expected}")]
    OffsetMismatch { expected: u64 },
    /// Another PATCH of the same upload is running.
    #[error("upload busy")]
    UploadBusy,
    /// More bytes than the upload's declared length.
    #[error("more bytes than the upload's length")]
    ExceedsLength,
    /// Only the item's uploader, an operator, or the owner or a moderator of a room that plays
    /// it may change its subtitles.
    #[error("may not change this item's subtitles")]
    SubtitleForbidden,
    /// Only the room's owner sets the room's default subtitles.
    #[error("not the room's owner")]
    NotRoomOwner,
    /// The item has as many subtitle tracks as allowed.
    #[error("at most {max} subtitle tracks per item")]
    TooManyTracks { max: u64 },
    /// The file is neither video nor audio.
    #[error("not a video or audio file")]
    NotMedia,
    /// A media file that cannot be read through (truncated, corrupt).
    #[error("damaged media file: {0}")]
    Damaged(String),
    /// ffprobe or ffmpeg took longer than allowed.
    #[error("probing took too long")]
    ProbeTimeout,
    /// room-svc or sync-svc did not answer in time.
    #[error("peer unavailable: {0}")]
    PeerUnavailable(String),
    /// The file system failed (or ffprobe could not be started).
    #[error("file system")]
    Io(#[from] std::io::Error),
    /// The database failed.
    #[error("database")]
    Database(#[from] sea_orm::DbErr),
}

impl From<RoomAccessError> for Error {
    fn from(error: RoomAccessError) -> Self {
        match error {
            RoomAccessError::RoomNotFound => Self::RoomNotFound,
            RoomAccessError::Unavailable(reason) => Self::PeerUnavailable(reason),
        }
    }
}

impl From<Violation> for Error {
    fn from(violation: Violation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

fn mebibytes(bytes: u64) -> String {
    // Whole MiB are what people read; the exact figure is in the logs.
    format!("{} MiB", bytes.div_ceil(1 << 20))
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => svc_kit::status::invalid_argument(&violations),
            Error::Auth(error) => error.into(),
            Error::NotFound => Self::not_found("media item not found"),
            Error::RoomNotFound => Self::not_found("room not found"),
            Error::NotOwner => Self::permission_denied("only the person who uploaded it may change it"),
            Error::NotMember => Self::permission_denied("not a member of this room"),
            Error::NotInRoom => Self::permission_denied("this room's timeline and queue do not hold the item"),
            Error::NeedsConversion => Self::failed_precondition(
                "browsers cannot play this file until it is converted; it plays as soon as its start is ready",
            ),
            Error::ConversionFailed(reason) => {
                Self::failed_precondition(format!("this file could not be converted: {reason}"))
            }
            Error::UrlRefused(reason) => Self::permission_denied(reason),
            Error::SubtitleForbidden => Self::permission_denied(
                "only the item's uploader, an operator, or the owner or a moderator of a room that plays it may change its subtitles",
            ),
            Error::NotRoomOwner => {
                Self::permission_denied("only the room's owner may set the room's default subtitles")
            }
            Error::TooManyTracks { max } => {
                Self::resource_exhausted(format!("an item may have at most {max} subtitle tracks"))
            }
            Error::UnsupportedTusVersion
            | Error::BadUploadRequest(_)
            | Error::WrongContentType
            | Error::EmptyFile
            | Error::ExceedsLength
            | Error::OffsetMismatch { .. } => Self::invalid_argument(error.to_string()),
            Error::TooLarge { .. } | Error::QuotaExceeded { .. } | Error::TooManyUploads { .. } | Error::DiskFull => {
                Self::resource_exhausted(error.to_string())
            }
            Error::UploadBusy => Self::aborted("upload busy"),
            Error::NotMedia | Error::Damaged(_) | Error::ProbeTimeout => Self::invalid_argument(error.to_string()),
            Error::PeerUnavailable(reason) => {
                tracing::warn!(%reason, "peer unavailable");
                Self::unavailable("a service this needs is unavailable; retry")
            }
            error @ Error::Io(_) => svc_kit::status::internal(&error),
            Error::Database(error) => svc_kit::status::database(&error),
        }
    }
}

/// An HTTP answer: status, a stable reason word for clients (the `Xiaowo-Error` header) and a
/// sentence for people (the body).
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl From<Error> for HttpError {
    fn from(error: Error) -> Self {
        let (status, reason, message) = match error {
            Error::InvalidArgument(violations) => {
                let message =
                    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ");
                (StatusCode::BAD_REQUEST, "bad-request", message)
            }
            Error::Auth(AuthError::Unavailable(reason)) | Error::PeerUnavailable(reason) => {
                tracing::warn!(%reason, "peer unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Please retry in a moment.".to_owned())
            }
            Error::Auth(AuthError::Unauthenticated | AuthError::AdminRequired { .. } | AuthError::InternalRequired) => {
                (StatusCode::UNAUTHORIZED, "unauthenticated", "Your session has ended.".to_owned())
            }
            Error::NotFound => (StatusCode::NOT_FOUND, "not-found", "No such file or upload.".to_owned()),
            Error::RoomNotFound => (StatusCode::NOT_FOUND, "room-not-found", "No such room.".to_owned()),
            Error::NotOwner | Error::NotMember | Error::NotInRoom | Error::SubtitleForbidden | Error::NotRoomOwner => {
                (StatusCode::FORBIDDEN, "forbidden", "You may not do that.".to_owned())
            }
            Error::NeedsConversion => (
                StatusCode::CONFLICT,
                "needs-conversion",
                "Browsers cannot play this file until it is converted.".to_owned(),
            ),
            Error::ConversionFailed(reason) => {
                (StatusCode::CONFLICT, "conversion-failed", format!("This file could not be converted: {reason}"))
            }
            Error::UrlRefused(reason) => (StatusCode::FORBIDDEN, "url-refused", format!("This link is {reason}.")),
            Error::UnsupportedTusVersion => (
                StatusCode::PRECONDITION_FAILED,
                "tus-version",
                "Only version 1.0.0 of the tus protocol is supported.".to_owned(),
            ),
            Error::BadUploadRequest(what) => (StatusCode::BAD_REQUEST, "bad-request", what.to_owned()),
            Error::WrongContentType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type",
                "Upload data must be sent as application/offset+octet-stream.".to_owned(),
            ),
            Error::EmptyFile => (StatusCode::BAD_REQUEST, "empty", "The file is empty.".to_owned()),
            Error::TooLarge { max_bytes } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("The file is larger than the {} this server accepts.", mebibytes(max_bytes)),
            ),
            Error::QuotaExceeded { quota_bytes, used_bytes } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "quota",
                format!(
                    "This would exceed your upload quota: {} used of {}.",
                    mebibytes(used_bytes),
                    mebibytes(quota_bytes)
                ),
            ),
            Error::TooManyUploads { max } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-uploads",
                format!("You already have {max} uploads going; finish or cancel one first."),
            ),
            Error::DiskFull => (
                StatusCode::INSUFFICIENT_STORAGE,
                "disk-full",
                "The server does not have enough free disk space for this file.".to_owned(),
            ),
            Error::OffsetMismatch { expected } => {
                (StatusCode::CONFLICT, "offset", format!("The upload continues at byte {expected}."))
            }
            Error::TooManyTracks { max } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-tracks",
                format!("This item already has {max} subtitle tracks."),
            ),
            Error::UploadBusy => {
                (StatusCode::LOCKED, "busy", "This upload is already receiving data; retry shortly.".to_owned())
            }
            Error::ExceedsLength => {
                (StatusCode::BAD_REQUEST, "exceeds-length", "More data than the upload's declared length.".to_owned())
            }
            Error::NotMedia => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-media",
                "This is not a video or audio file; it was not kept.".to_owned(),
            ),
            Error::Damaged(detail) => {
                tracing::info!(%detail, "damaged media refused");
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "damaged",
                    "The file is incomplete or damaged and cannot be played; it was not kept.".to_owned(),
                )
            }
            Error::ProbeTimeout => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "probe-timeout",
                "The file took too long to read; it was not kept.".to_owned(),
            ),
            error @ Error::Io(_) => {
                let _ = svc_kit::status::internal(&error);
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Something went wrong on the server.".to_owned())
            }
            Error::Database(error) => {
                let busy = svc_kit::status::is_busy(&error);
                let _ = svc_kit::status::database(&error);
                if busy {
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The server is busy; retry.".to_owned())
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Something went wrong on the server.".to_owned())
                }
            }
        };
        Self { status, reason, message }
    }
}
