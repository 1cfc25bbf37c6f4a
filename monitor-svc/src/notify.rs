//! Telling people about alerts: a webhook (JSON POST), e-mail over SMTP and SMS through a
//! webhook gateway. Every channel has its own queue and worker, so a slow or failing channel
//! delays only itself; collection only ever enqueues (never waits), and every delivery is
//! retried with doubling back-off and recorded in the `notifications` table.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use prometheus::{IntCounterVec, Opts};
use svc_kit::clock::SharedClock;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alert, AlertState};
use crate::config::Config;
use crate::http::HttpClient;
use crate::store::{Delivery, Store};

/// Notifications one channel may have waiting; beyond that new ones are dropped (and counted)
/// rather than holding up collection.
const QUEUE_DEPTH: usize = 1024;

/// A notification configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("notification setting `{field}`: {problem}")]
pub struct ChannelError {
    /// The flag's name without `--`.
    pub field: &'static str,
    pub problem: String,
}

/// One way of telling people.
#[derive(Clone)]
pub enum Channel {
    /// JSON POST of the alert.
    Webhook { url: String },
    /// JSON POST of `{"to": [...], "text": "..."}` to an SMS gateway.
    Sms { url: String, to: Vec<String> },
    /// A plain-text e-mail to each recipient.
    Email { transport: AsyncSmtpTransport<Tokio1Executor>, from: Mailbox, to: Vec<Mailbox> },
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn http_url(field: &'static str, url: &str) -> Result<String, ChannelError> {
    let uri: http::Uri = url.parse().map_err(|_| ChannelError { field, problem: format!("{url:?} is not a URL") })?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(ChannelError { field, problem: format!("{url:?}: use an http:// URL") });
    }
    Ok(url.to_owned())
}

fn mailbox(field: &'static str, address: &str) -> Result<Mailbox, ChannelError> {
    address.trim().parse().map_err(|error| ChannelError { field, problem: format!("{address:?}: {error}") })
}

impl Channel {
    /// The channel's name in metrics and the `notifications` table.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Sms { .. } => "sms",
            Self::Email { .. } => "email",
        }
    }

    /// The channels `config` asks for.
    ///
    /// # Errors
    /// When a URL, address or server setting is unusable.
    pub fn from_config(config: &Config) -> Result<Vec<Self>, ChannelError> {
        let mut channels = Vec::new();
        if let Some(url) = &config.webhook_url {
            channels.push(Self::Webhook { url: http_url("monitor-webhook-url", url)? });
        }
        if let Some(url) = &config.sms_gateway_url {
            if config.sms_to.is_empty() {
                return Err(ChannelError { field: "monitor-sms-to", problem: "no phone numbers".to_owned() });
            }
            channels.push(Self::Sms { url: http_url("monitor-sms-gateway-url", url)?, to: config.sms_to.clone() });
        }
        if let Some(server) = &config.smtp_server {
            let (host, port) =
                server.rsplit_once(':').and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?))).ok_or_else(
                    || ChannelError { field: "monitor-smtp-server", problem: format!("{server:?}: use host:port") },
                )?;
            if config.smtp_to.is_empty() {
                return Err(ChannelError { field: "monitor-smtp-to", problem: "no recipients".to_owned() });
            }
            let from = mailbox("monitor-smtp-from", &config.smtp_from)?;
            let to =
                config.smtp_to.iter().map(|address| mailbox("monitor-smtp-to", address)).collect::<Result<_, _>>()?;
            // Plain SMTP to a relay on the private network; the relay does TLS onwards.
            let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(port)
                .timeout(Some(config.notify_timeout));
            if let (Some(username), Some(password)) = (&config.smtp_username, &config.smtp_password) {
                builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
            }
            channels.push(Self::Email { transport: builder.build(), from, to });
        }
        Ok(channels)
    }

    async fn deliver(&self, http: &HttpClient, alert: &Alert, timeout: Duration) -> Result<(), String> {
        match self {
            Self::Webhook { url } => {
                http.post_json(url, &payload(alert), timeout).await.map(drop).map_err(|error| error.to_string())
            }
            Self::Sms { url, to } => {
                let body = serde_json::json!({ "to": to, "text": summary(alert) });
                http.post_json(url, &body, timeout).await.map(drop).map_err(|error| error.to_string())
            }
            Self::Email { transport, from, to } => {
                for recipient in to {
                    let email = Message::builder()
                        .from(from.clone())
                        .to(recipient.clone())
                        .subject(summary(alert))
                        .header(ContentType::TEXT_PLAIN)
                        .body(body_text(alert))
                        .map_err(|error| error.to_string())?;
                    let sent = tokio::time::timeout(timeout, transport.send(email))
                        .await
                        .map_err(|_| format!("timed out after {timeout:?}"))?;
                    sent.map_err(|error| error.to_string())?;
                }
                Ok(())
            }
        }
    }
}

/// The JSON a webhook receives.
#[must_use]
pub fn payload(alert: &Alert) -> serde_json::Value {
    let Alert {
        alert_id,
        rule,
        service,
        severity,
        state,
        message,
        value,
        threshold,
        started_at,
        fired_at,
        resolved_at,
    } = alert;
    serde_json::json!({
        "alert_id": alert_id,
        "status": state.as_str(),
        "rule": rule,
        "service": service,
        "severity": severity.as_str(),
        "message": message,
        "value": value,
        "threshold": threshold,
        "started_at_ms": started_at,
        "fired_at_ms": fired_at,
        "resolved_at_ms": resolved_at,
    })
}

fn summary(alert: &Alert) -> String {
    format!(
        "[{}] {} {} on {}: {}",
        alert.state.as_str().to_uppercase(),
        alert.severity.as_str(),
        alert.rule,
        alert.service,
        alert.message
    )
}

fn body_text(alert: &Alert) -> String {
    format!(
        "{}\n\nvalue: {}\nthreshold: {}\nalert id: {}\n",
        summary(alert),
        alert.value,
        alert.threshold,
        alert.alert_id
    )
}

/// Retry policy of every channel.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
}

/// Hands alert changes to every channel's queue.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    queues: Vec<(&'static str, mpsc::Sender<Alert>)>,
    counts: Option<IntCounterVec>,
}

/// Everything a channel worker needs.
#[derive(Debug, Clone)]
pub struct Delivering {
    pub http: HttpClient,
    pub store: Store,
    pub clock: SharedClock,
    pub retry: Retry,
}

impl Notifier {
    /// Queues for `channels` and the worker of each, to be run until `shutdown`.
    #[must_use]
    pub fn start(
        channels: Vec<Channel>,
        delivering: &Delivering,
        registry: &prometheus::Registry,
        shutdown: &CancellationToken,
    ) -> (Self, Vec<(&'static str, impl Future<Output = ()> + Send + 'static)>) {
        let counts = svc_kit::metrics::registered(
            registry,
            IntCounterVec::new(
                Opts::new("xiaowo_monitor_notifications_total", "Alert notifications by channel and outcome."),
                &["channel", "outcome"],
            ),
        );
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for channel in channels {
            let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
            let name = channel.name();
            queues.push((name, sender));
            let worker = run_channel(Arc::new(channel), receiver, delivering.clone(), counts.clone(), shutdown.clone());
            workers.push((name, worker));
        }
        (Self { queues, counts: Some(counts) }, workers)
    }

    /// Queues `alert` on every channel without waiting.
    pub fn notify(&self, alert: &Alert) {
        for (name, queue) in &self.queues {
            if queue.try_send(alert.clone()).is_err() {
                tracing::warn!(channel = name, alert_id = alert.alert_id, "notification queue full; dropped");
                if let Some(counts) = &self.counts {
                    counts.with_label_values(&[name, "dropped"]).inc();
                }
            }
        }
    }
}

async fn run_channel(
    channel: Arc<Channel>,
    mut queue: mpsc::Receiver<Alert>,
    delivering: Delivering,
    counts: IntCounterVec,
    shutdown: CancellationToken,
) {
    loop {
        let alert = tokio::select! {
            () = shutdown.cancelled() => return,
            next = queue.recv() => match next {
                Some(alert) => alert,
                None => return,
            },
        };
        let Delivering { http, store, clock, retry } = &delivering;
        let mut attempts = 0;
        let mut last_error = String::new();
        let mut delivered = false;
        while attempts < retry.attempts.max(1) {
            attempts += 1;
            match channel.deliver(http, &alert, retry.timeout).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(error) => {
                    tracing::warn!(channel = channel.name(), alert_id = alert.alert_id, attempts, %error, "notification failed");
                    last_error = error;
                }
            }
            if attempts < retry.attempts {
                let backoff = retry.backoff.saturating_mul(2u32.saturating_pow(attempts - 1));
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
        let outcome = if delivered { "delivered" } else { "failed" };
        counts.with_label_values(&[channel.name(), outcome]).inc();
        let event = if alert.state == AlertState::Resolved { AlertState::Resolved } else { AlertState::Firing };
        let delivery = Delivery {
            alert_id: alert.alert_id,
            channel: channel.name(),
            event,
            attempts,
            delivered,
            last_error: if delivered { String::new() } else { last_error },
            recorded_at: clock.now_ms(),
        };
        if let Err(error) = store.record_delivery(delivery).await {
            tracing::error!(%error, alert_id = alert.alert_id, "recording a notification failed");
        }
    }
}
