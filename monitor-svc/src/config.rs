//! monitor-svc's settings, composed into the `xiaowo` binary's flags.

use std::path::PathBuf;
use std::time::Duration;

use svc_kit::server::parse_duration;

/// One service to scrape: a name for it and the base URL whose `/metrics` is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// The name alerts and queries use (`xiaowo`, `session`, `room`…).
    pub name: String,
    /// `http://host:port`, without `/metrics`.
    pub url: String,
}

/// Parses `name=http://host:port`.
///
/// # Errors
/// A message naming what is missing.
pub fn parse_target(value: &str) -> Result<ScrapeTarget, String> {
    let (name, url) =
        value.split_once('=').ok_or_else(|| format!("target {value:?}: expected name=http://host:port"))?;
    let name = name.trim();
    let url = url.trim().trim_end_matches('/');
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("target {value:?}: the name must be letters, digits, '-' or '_'"));
    }
    let uri: http::Uri = url.parse().map_err(|_| format!("target {value:?}: {url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!("target {value:?}: the URL must be http://host:port"));
    }
    Ok(ScrapeTarget { name: name.to_owned(), url: url.to_owned() })
}

/// monitor-svc configuration.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "monitor-svc")]
pub struct Config {
    /// Database URL; defaults to `sqlite://<data dir>/monitor.db`.
    #[arg(id = "monitor_database_url", long = "monitor-database-url", env = "XIAOWO_MONITOR_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Services to scrape as `name=http://host:port`, comma-separated. Empty: the process itself
    /// under `xiaowo up`; every service at its default address in split mode.
    #[arg(id = "monitor_targets", long = "monitor-targets", env = "XIAOWO_MONITOR_TARGETS", value_delimiter = ',', value_parser = parse_target)]
    pub targets: Vec<ScrapeTarget>,
    /// How often every target is scraped and the rules evaluated.
    #[arg(id = "monitor_scrape_interval", long = "monitor-scrape-interval", env = "XIAOWO_MONITOR_SCRAPE_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub scrape_interval: Duration,
    /// How long one scrape may take before the target counts as down.
    #[arg(id = "monitor_scrape_timeout", long = "monitor-scrape-timeout", env = "XIAOWO_MONITOR_SCRAPE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub scrape_timeout: Duration,
    /// How long samples are kept in the `metrics` table.
    #[arg(id = "monitor_retention", long = "monitor-retention", env = "XIAOWO_MONITOR_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub retention: Duration,
    /// How often samples older than the retention period are deleted.
    #[arg(id = "monitor_janitor_interval", long = "monitor-janitor-interval", env = "XIAOWO_MONITOR_JANITOR_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub janitor_interval: Duration,
    /// Alert rules (TOML, see the README); the built-in defaults when unset.
    #[arg(id = "monitor_rules", long = "monitor-rules", env = "XIAOWO_MONITOR_RULES")]
    pub rules_file: Option<PathBuf>,
    /// Counters stored as per-second rates under `<name>:rate` (summed over their labels).
    #[arg(
        id = "monitor_counters",
        long = "monitor-counters",
        env = "XIAOWO_MONITOR_COUNTERS",
        value_delimiter = ',',
        default_value = "xiaowo_auth_failures_total,xiaowo_permission_denied_total,xiaowo_room_wrong_password_total,xiaowo_flood_limited_total"
    )]
    pub counters: Vec<String>,
    /// Gauges stored under their own name (summed over their labels).
    #[arg(
        id = "monitor_gauges",
        long = "monitor-gauges",
        env = "XIAOWO_MONITOR_GAUGES",
        value_delimiter = ',',
        default_value = "xiaowo_sessions_live,xiaowo_rooms_active,xiaowo_sync_watch_streams,xiaowo_open_connections"
    )]
    pub gauges: Vec<String>,
    /// Histograms whose p50 and p99 over each interval are stored as `<name>:p50` / `<name>:p99`
    /// (e.g. how far players drift from the shared timeline).
    #[arg(
        id = "monitor_histograms",
        long = "monitor-histograms",
        env = "XIAOWO_MONITOR_HISTOGRAMS",
        value_delimiter = ',',
        default_value = "xiaowo_sync_drift_seconds"
    )]
    pub histograms: Vec<String>,
    /// Alerts are POSTed as JSON to this URL.
    #[arg(id = "monitor_webhook_url", long = "monitor-webhook-url", env = "XIAOWO_MONITOR_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// An SMS gateway that takes `{"to": [...], "text": "..."}` as a JSON POST.
    #[arg(id = "monitor_sms_gateway_url", long = "monitor-sms-gateway-url", env = "XIAOWO_MONITOR_SMS_GATEWAY_URL")]
    pub sms_gateway_url: Option<String>,
    /// Phone numbers the SMS gateway sends to, comma-separated.
    #[arg(id = "monitor_sms_to", long = "monitor-sms-to", env = "XIAOWO_MONITOR_SMS_TO", value_delimiter = ',')]
    pub sms_to: Vec<String>,
    /// SMTP relay as `host:port` (plain SMTP, e.g. a local MTA); e-mail is off when unset.
    #[arg(id = "monitor_smtp_server", long = "monitor-smtp-server", env = "XIAOWO_MONITOR_SMTP_SERVER")]
    pub smtp_server: Option<String>,
    /// Sender address of alert e-mails.
    #[arg(
        id = "monitor_smtp_from",
        long = "monitor-smtp-from",
        env = "XIAOWO_MONITOR_SMTP_FROM",
        default_value = "Xiaowo monitor <monitor@localhost>"
    )]
    pub smtp_from: String,
    /// Recipients of alert e-mails, comma-separated.
    #[arg(id = "monitor_smtp_to", long = "monitor-smtp-to", env = "XIAOWO_MONITOR_SMTP_TO", value_delimiter = ',')]
    pub smtp_to: Vec<String>,
    /// SMTP user name, when the relay wants one.
    #[arg(id = "monitor_smtp_username", long = "monitor-smtp-username", env = "XIAOWO_MONITOR_SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    /// SMTP password.
    #[arg(
        id = "monitor_smtp_password",
        long = "monitor-smtp-password",
        env = "XIAOWO_MONITOR_SMTP_PASSWORD",
        hide_env_values = true
    )]
    pub smtp_password: Option<String>,
    /// Tries per notification and channel before it is recorded as failed.
    #[arg(
        id = "monitor_notify_attempts",
        long = "monitor-notify-attempts",
        env = "XIAOWO_MONITOR_NOTIFY_ATTEMPTS",
        default_value_t = 5
    )]
    pub notify_attempts: u32,
    /// Wait before the first retry; doubled after every failed try.
    #[arg(id = "monitor_notify_backoff", long = "monitor-notify-backoff", env = "XIAOWO_MONITOR_NOTIFY_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    pub notify_backoff: Duration,
    /// Deadline of one delivery try.
    #[arg(id = "monitor_notify_timeout", long = "monitor-notify-timeout", env = "XIAOWO_MONITOR_NOTIFY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub notify_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn targets_need_a_name_and_an_http_url() {
        let target = parse_target("session=http://127.0.0.1:50051/").unwrap();
        assert_eq!((target.name.as_str(), target.url.as_str()), ("session", "http://127.0.0.1:50051"));
        assert!(parse_target("http://127.0.0.1:50051").is_err());
        assert!(parse_target("=http://127.0.0.1:50051").is_err());
        assert!(parse_target("room=https://example.org").is_err());
        assert!(parse_target("room=not a url").is_err());
    }
}
