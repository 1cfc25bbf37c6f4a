//! sync-svc's settings, composed into the `xiaowo` binary's flags. Every argument has an
//! explicit `sync_` id: clap ids default to field names, which other services' blocks share.

use std::time::Duration;

use svc_kit::server::parse_duration;

/// sync-svc configuration.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "sync-svc")]
pub struct Config {
    /// Database URL; defaults to `sqlite://<data dir>/sync.db`.
    #[arg(id = "sync_database_url", long = "sync-database-url", env = "XIAOWO_SYNC_DATABASE_URL")]
    pub database_url: Option<String>,
    /// A room whose streams were sent nothing for this long gets a heartbeat on all of them,
    /// checked every tick (at most 20 s, well inside nginx's 60 s idle cut).
    #[arg(id = "sync_heartbeat_interval", long = "sync-heartbeat-interval", env = "XIAOWO_SYNC_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// Events a room keeps for a slow watcher before that watcher is resynchronised from a
    /// fresh snapshot.
    #[arg(
        id = "sync_room_buffer",
        long = "sync-room-buffer",
        alias = "sync-watcher-buffer",
        env = "XIAOWO_SYNC_ROOM_BUFFER",
        default_value_t = 64
    )]
    pub room_buffer: usize,
    /// How long room-svc's answer to "may this user act here" is reused.
    /// While room-svc's event stream is live, events drop answers as they change and answers
    /// are kept for up to a minute; a zero TTL turns caching off.
    #[arg(id = "sync_access_cache_ttl", long = "sync-access-cache-ttl", env = "XIAOWO_SYNC_ACCESS_CACHE_TTL", default_value = "2s", value_parser = parse_duration)]
    pub access_cache_ttl: Duration,
    /// How long a validated session token is reused before session-svc is asked again.
    #[arg(id = "sync_session_cache_ttl", long = "sync-session-cache-ttl", env = "XIAOWO_SYNC_SESSION_CACHE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub session_cache_ttl: Duration,
    /// Room activity is reported to room-svc at most this often per room.
    #[arg(id = "sync_activity_interval", long = "sync-activity-interval", alias = "sync-activity-debounce", env = "XIAOWO_SYNC_ACTIVITY_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub activity_interval: Duration,
    /// Shortest lead of a play the server schedules (the start waits at least this long, or
    /// twice the highest round trip members reported, so that everyone starts together).
    #[arg(id = "sync_min_start_lead", long = "sync-min-start-lead", env = "XIAOWO_SYNC_MIN_START_LEAD", default_value = "300ms", value_parser = parse_duration)]
    pub min_start_lead: Duration,
    /// Wait for everyone: how long a member may buffer before the room pauses for them.
    #[arg(id = "sync_wait_grace", long = "sync-wait-grace", env = "XIAOWO_SYNC_WAIT_GRACE", default_value = "2s", value_parser = parse_duration)]
    pub wait_grace: Duration,
    /// Wait for everyone: the longest pause for buffering members before playback resumes
    /// without them.
    #[arg(id = "sync_wait_timeout", long = "sync-wait-timeout", env = "XIAOWO_SYNC_WAIT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub wait_timeout: Duration,
    /// How often rooms are checked for an ended item, a wait to start or end, and presence
    /// to publish.
    #[arg(id = "sync_tick_interval", long = "sync-tick-interval", env = "XIAOWO_SYNC_TICK_INTERVAL", default_value = "200ms", value_parser = parse_duration)]
    pub tick_interval: Duration,
    /// Presence (who watches, their drift) is streamed at most this often per room.
    #[arg(id = "sync_presence_interval", long = "sync-presence-interval", env = "XIAOWO_SYNC_PRESENCE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub presence_interval: Duration,
    /// With a broker: how often this instance tells the others who watches each room here.
    #[arg(id = "sync_presence_heartbeat", long = "sync-presence-heartbeat", env = "XIAOWO_SYNC_PRESENCE_HEARTBEAT", default_value = "2s", value_parser = parse_duration)]
    pub presence_heartbeat: Duration,
    /// With a broker: another instance's watchers are dropped from presence when it has not
    /// confirmed them for this long (it died or lost the broker); keep it ≥ 3 heartbeats.
    #[arg(id = "sync_presence_expiry", long = "sync-presence-expiry", env = "XIAOWO_SYNC_PRESENCE_EXPIRY", default_value = "6s", value_parser = parse_duration)]
    pub presence_expiry: Duration,
    /// Commands one user may send at once before being limited.
    #[arg(
        id = "sync_command_burst",
        long = "sync-command-burst",
        env = "XIAOWO_SYNC_COMMAND_BURST",
        default_value_t = 20
    )]
    pub command_burst: u32,
    /// Commands one user may send per second, sustained.
    #[arg(
        id = "sync_commands_per_second",
        long = "sync-commands-per-second",
        env = "XIAOWO_SYNC_COMMANDS_PER_SECOND",
        default_value_t = 5
    )]
    pub commands_per_second: u32,
}
