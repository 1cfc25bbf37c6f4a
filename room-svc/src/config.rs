//! room-svc's settings, composed into the `xiaowo` binary's flags.

use std::time::Duration;

use svc_kit::server::parse_duration;

/// room-svc configuration.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "room-svc")]
pub struct Config {
    /// Database URL; defaults to `sqlite://<data dir>/room.db`.
    #[arg(id = "room-database-url", long = "room-database-url", env = "XIAOWO_ROOM_DATABASE_URL")]
    pub database_url: Option<String>,
    /// bcrypt cost for room passwords (4 to 31; each step doubles the work).
    #[arg(id = "room-bcrypt-cost", long = "room-bcrypt-cost", env = "XIAOWO_ROOM_BCRYPT_COST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,
    /// A room with no activity for this long is closed (e.g. `1h`).
    #[arg(id = "room-idle-timeout", long = "room-idle-timeout", env = "XIAOWO_ROOM_IDLE_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How often idle rooms are looked for.
    #[arg(id = "room-janitor-interval", long = "room-janitor-interval", env = "XIAOWO_ROOM_JANITOR_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub janitor_interval: Duration,
    /// How long a kicked member cannot rejoin the room.
    #[arg(id = "room-kick-ban", long = "room-kick-ban", env = "XIAOWO_ROOM_KICK_BAN", default_value = "10m", value_parser = parse_duration)]
    pub kick_ban: Duration,
    /// Wrong passwords one caller may try per minute (also the burst), across rooms.
    #[arg(
        id = "room-password-attempts-per-caller",
        long = "room-password-attempts-per-caller",
        env = "XIAOWO_ROOM_PASSWORD_ATTEMPTS_PER_CALLER",
        default_value_t = 5
    )]
    pub password_attempts_per_caller: u32,
    /// Wrong passwords one room answers at once per minute (also the burst), from everyone
    /// together; past it, wrong answers are held back for a while. The right password always
    /// gets in, and members already in the room are never affected.
    #[arg(
        id = "room-password-attempts-per-room",
        long = "room-password-attempts-per-room",
        env = "XIAOWO_ROOM_PASSWORD_ATTEMPTS_PER_ROOM",
        default_value_t = 20
    )]
    pub password_attempts_per_room: u32,
    /// Wrong passwords one client address may try per minute (also the burst), across rooms
    /// and sessions, so that a guesser cannot start a new session for every few tries.
    #[arg(
        id = "room-password-attempts-per-address",
        long = "room-password-attempts-per-address",
        env = "XIAOWO_ROOM_PASSWORD_ATTEMPTS_PER_ADDRESS",
        default_value_t = 20
    )]
    pub password_attempts_per_address: u32,
    /// Rooms one session may create per hour (also the burst); 0 for no limit.
    #[arg(
        id = "room-creates-per-caller",
        long = "room-creates-per-caller",
        env = "XIAOWO_ROOM_CREATES_PER_CALLER",
        default_value_t = 20
    )]
    pub creates_per_caller: u32,
    /// Rooms one client address may create per hour (also the burst), across sessions; 0 for
    /// no limit.
    #[arg(
        id = "room-creates-per-address",
        long = "room-creates-per-address",
        env = "XIAOWO_ROOM_CREATES_PER_ADDRESS",
        default_value_t = 60
    )]
    pub creates_per_address: u32,
    /// Open rooms one session may own at once; 0 for no limit.
    #[arg(
        id = "room-max-open-per-owner",
        long = "room-max-open-per-owner",
        env = "XIAOWO_ROOM_MAX_OPEN_PER_OWNER",
        default_value_t = 10
    )]
    pub max_open_per_owner: u32,
    /// Most members one room may have.
    #[arg(id = "room-max-members", long = "room-max-members", env = "XIAOWO_ROOM_MAX_MEMBERS", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_members: u32,
    /// How long a validated session token is trusted before asking session-svc again (while
    /// session-svc's change feed is live, ended sessions drop out at once and answers are kept
    /// for up to 5 minutes; a zero TTL turns caching off).
    #[arg(id = "room-session-cache-ttl", long = "room-session-cache-ttl", alias = "room-session-cache", env = "XIAOWO_ROOM_SESSION_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub session_cache_ttl: Duration,
    /// Interval of the heartbeat on `WatchRoomEvents` streams.
    #[arg(id = "room-heartbeat-interval", long = "room-heartbeat-interval", alias = "room-events-heartbeat", env = "XIAOWO_ROOM_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// Events a `WatchRoomEvents` subscriber may lag behind before its stream is ended.
    #[arg(
        id = "room-events-buffer",
        long = "room-events-buffer",
        env = "XIAOWO_ROOM_EVENTS_BUFFER",
        default_value_t = 1024
    )]
    pub events_buffer: usize,
}
