//! chat-svc's settings, composed into the `xiaowo` binary's flags.

use std::time::Duration;

use svc_kit::db::Synchronous;
use svc_kit::server::parse_duration;

/// chat-svc configuration.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "chat-svc")]
pub struct Config {
    /// Database URL; defaults to `sqlite://<data dir>/chat.db`.
    #[arg(id = "chat-database-url", long = "chat-database-url", env = "XIAOWO_CHAT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// SQLite durability of chat commits. `full` (default) fsyncs every commit, so an
    /// acknowledged message survives a power cut; group commit makes that one fsync per batch.
    /// `normal` survives a crash of the process but may lose the last commits on power loss.
    #[arg(
        id = "chat-db-synchronous",
        long = "chat-db-synchronous",
        env = "XIAOWO_CHAT_DB_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    pub synchronous: Synchronous,
    /// Messages one member may send in a burst in one room.
    #[arg(id = "chat-flood-burst", long = "chat-flood-burst", env = "XIAOWO_CHAT_FLOOD_BURST", default_value_t = 5)]
    pub flood_burst: u32,
    /// Messages per second one member may send in one room, sustained.
    #[arg(
        id = "chat-flood-per-second",
        long = "chat-flood-per-second",
        env = "XIAOWO_CHAT_FLOOD_PER_SECOND",
        default_value_t = 1.0
    )]
    pub flood_per_second: f64,
    /// How long room-svc's answer on membership is reused (room events drop it sooner).
    /// While room-svc's event stream is live, events drop answers as they change and answers
    /// are kept for up to a minute; a zero TTL turns caching off.
    #[arg(id = "chat-access-cache-ttl", long = "chat-access-cache-ttl", env = "XIAOWO_CHAT_ACCESS_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub access_cache_ttl: Duration,
    /// How long a validated session token is reused before session-svc is asked again (while
    /// session-svc's change feed is live, ended sessions drop out at once and answers are kept
    /// for up to 5 minutes; a zero TTL turns caching off).
    #[arg(id = "chat-session-cache-ttl", long = "chat-session-cache-ttl", env = "XIAOWO_CHAT_SESSION_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub session_cache_ttl: Duration,
    /// Room activity is reported to room-svc at most this often per room.
    #[arg(id = "chat-activity-interval", long = "chat-activity-interval", env = "XIAOWO_CHAT_ACTIVITY_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub activity_interval: Duration,
    /// Most messages a watch replays; a client further behind is told to reload history.
    #[arg(id = "chat-max-replay", long = "chat-max-replay", env = "XIAOWO_CHAT_MAX_REPLAY", default_value_t = 1000)]
    pub max_replay: u32,
    /// A room whose watch streams were sent nothing for this long gets a heartbeat on all of
    /// them (at most 20 s keeps proxies from timing them out).
    #[arg(id = "chat-heartbeat-interval", long = "chat-heartbeat-interval", env = "XIAOWO_CHAT_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// No longer used: a watch stream has no buffer of its own; what a watcher has not yet
    /// taken waits in its room's buffer (`--chat-room-buffer`). Still accepted, so that an
    /// install that sets it keeps starting; a warning says it is ignored.
    #[arg(id = "chat-watch-buffer", long = "chat-watch-buffer", env = "XIAOWO_CHAT_WATCH_BUFFER", hide = true)]
    pub watch_buffer: Option<usize>,
    /// Live events a room keeps for watchers that are behind; one further behind catches up
    /// from the database.
    #[arg(id = "chat-room-buffer", long = "chat-room-buffer", env = "XIAOWO_CHAT_ROOM_BUFFER", default_value_t = 256)]
    pub room_buffer: usize,
    /// Sends waiting for the writer before senders wait too.
    #[arg(id = "chat-write-queue", long = "chat-write-queue", env = "XIAOWO_CHAT_WRITE_QUEUE", default_value_t = 4096)]
    pub write_queue: usize,
    /// Most messages committed in one transaction.
    #[arg(id = "chat-write-batch", long = "chat-write-batch", env = "XIAOWO_CHAT_WRITE_BATCH", default_value_t = 256)]
    pub write_batch: usize,
    /// How long the writer gathers sends after the first of a batch before committing: each
    /// commit costs the same few statements however many messages it holds, so a busy server
    /// spends less per message; `0ms` commits at once.
    #[arg(id = "chat-write-linger", long = "chat-write-linger", env = "XIAOWO_CHAT_WRITE_LINGER", default_value = "2ms", value_parser = parse_duration)]
    pub write_linger: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        chat: Config,
    }

    /// An install that still sets the retired watcher buffer keeps starting.
    #[test]
    fn the_retired_watch_buffer_flag_is_still_accepted() {
        use clap::Parser;
        let parsed = Command::try_parse_from(["xiaowo", "--chat-watch-buffer", "64"]).expect("accepted");
        assert_eq!(parsed.chat.watch_buffer, Some(64));
        let parsed = Command::try_parse_from(["xiaowo"]).expect("defaults");
        assert_eq!(parsed.chat.watch_buffer, None);
    }
}
