//! Xiaowo's wire API. The only crate that knows protobuf: services convert these types to
//! their own at the gRPC edge. Every `.proto` lives under `proto/xiaowo/<domain>/v1/`.

pub mod codec;

/// Encoded `FileDescriptorSet` of every Xiaowo proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xiaowo_descriptor.bin"));

/// `xiaowo.session.v1`: anonymous sessions.
pub mod session {
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("xiaowo.session.v1");
    }
}

/// `xiaowo.room.v1`: rooms, members, roles, audit log.
pub mod room {
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("xiaowo.room.v1");
    }
}

/// `xiaowo.sync.v1`: the shared playback timeline, queue, clock sync and room stream.
pub mod sync {
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("xiaowo.sync.v1");
    }
}

/// `xiaowo.chat.v1`: room chat, history, receipts, moderation.
pub mod chat {
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("xiaowo.chat.v1");
    }
}

/// `xiaowo.monitor.v1`: scraped figures, alert rules and alerts.
pub mod monitor {
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("xiaowo.monitor.v1");
    }
}

/// `xiaowo.media.v1`: the media library, playback URLs and upload quotas.
pub mod media {
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("xiaowo.media.v1");
    }
}

/// A `google.protobuf.Timestamp` for Unix milliseconds.
#[must_use]
pub fn timestamp_from_ms(ms: i64) -> prost_types::Timestamp {
    let nanos = i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0);
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos }
}

/// Unix milliseconds of a `google.protobuf.Timestamp`.
#[must_use]
pub fn ms_from_timestamp(timestamp: &prost_types::Timestamp) -> i64 {
    timestamp.seconds.saturating_mul(1000).saturating_add(i64::from(timestamp.nanos / 1_000_000))
}
