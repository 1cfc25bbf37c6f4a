//! session-svc's settings, composed into the `xiaowo` binary's flags.

use std::time::Duration;

use svc_kit::server::parse_duration;

/// When the session cookie gets `Secure` and the `__Host-` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CookieSecurity {
    /// When the request came over HTTPS (`x-forwarded-proto: https` from the proxy) or to a
    /// loopback host, which browsers treat as a secure context.
    Auto,
    /// Always (a deployment that is only ever reached over HTTPS).
    Always,
    /// Never (plain-HTTP deployments on a private network).
    Never,
}

/// session-svc configuration.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "session-svc")]
pub struct Config {
    /// Database URL; defaults to `sqlite://<data dir>/session.db`.
    #[arg(id = "session-database-url", long = "session-database-url", env = "XIAOWO_SESSION_DATABASE_URL")]
    pub database_url: Option<String>,
    /// A session unused for this long expires (sliding; e.g. `14d`).
    #[arg(id = "session-idle-timeout", long = "session-idle-timeout", env = "XIAOWO_SESSION_IDLE_TIMEOUT", default_value = "14d", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// A session expires this long after creation however much it is used (e.g. `90d`).
    #[arg(id = "session-absolute-lifetime", long = "session-absolute-lifetime", env = "XIAOWO_SESSION_ABSOLUTE_LIFETIME", default_value = "90d", value_parser = parse_duration)]
    pub absolute_lifetime: Duration,
    /// How often expired sessions are deleted.
    #[arg(id = "session-janitor-interval", long = "session-janitor-interval", env = "XIAOWO_SESSION_JANITOR_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub janitor_interval: Duration,
    /// When the cookie is marked `Secure` (with the `__Host-` name).
    #[arg(
        id = "session-cookie-secure",
        long = "session-cookie-secure",
        env = "XIAOWO_SESSION_COOKIE_SECURE",
        value_enum,
        default_value = "auto"
    )]
    pub cookie_security: CookieSecurity,
    /// Sessions one client address may create at once before being limited.
    #[arg(
        id = "session-create-burst",
        long = "session-create-burst",
        env = "XIAOWO_SESSION_CREATE_BURST",
        default_value_t = 30
    )]
    pub create_burst: u32,
    /// Sessions one client address may create per minute, sustained.
    #[arg(
        id = "session-create-per-minute",
        long = "session-create-per-minute",
        env = "XIAOWO_SESSION_CREATE_PER_MINUTE",
        default_value_t = 30
    )]
    pub create_per_minute: u32,
    /// Interval of the heartbeat on `WatchSessionChanges` streams.
    #[arg(id = "session-heartbeat-interval", long = "session-heartbeat-interval", alias = "session-changes-heartbeat", env = "XIAOWO_SESSION_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
}
