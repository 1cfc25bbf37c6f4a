//! The monitoring loop and the queries on its results. One round: scrape every target at once,
//! turn each answer into figures, store them in one transaction, then evaluate every rule
//! against the figures just computed and record, broadcast and notify what changed. A target
//! that does not answer gets `up = 0` and nothing else, so rules on its other figures hold
//! their state instead of resolving for lack of data.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};
use sea_orm::DbErr;
use svc_kit::clock::{SharedClock, millis};
use svc_kit::status::Violation;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::aggregate::{Figures, Snapshot};
use crate::alerts::{Alert, AlertState, Step, step};
use crate::config::ScrapeTarget;
use crate::http::HttpClient;
use crate::notify::Notifier;
use crate::rules::{Rule, RuleContext};
use crate::store::Store;

/// Largest alert page.
pub const MAX_PAGE_SIZE: u64 = 500;
const DEFAULT_PAGE_SIZE: u64 = 50;
/// Most buckets one metric query may return.
pub const MAX_QUERY_STEPS: i64 = 11_000;
const MIN_STEP_MS: i64 = 1000;
/// Alert changes a slow watcher may fall behind by before it misses some.
const CHANGE_BUFFER: usize = 256;

/// A target's latest state, for the overview.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    pub service: String,
    pub up: bool,
    /// Unix milliseconds of the last scrape; `None` before the first.
    pub last_scrape_at: Option<i64>,
    pub figures: BTreeMap<String, f64>,
}

/// What monitor-svc measures about itself.
#[derive(Debug, Clone)]
struct MonitorMetrics {
    scrapes: IntCounterVec,
}

type AlertKey = (String, String);

/// The monitoring domain.
#[derive(Debug)]
pub struct Monitor {
    store: Store,
    clock: SharedClock,
    http: HttpClient,
    targets: Vec<ScrapeTarget>,
    scrape_timeout: Duration,
    figures: Figures,
    rules: Vec<Rule>,
    context: RuleContext,
    notifier: Notifier,
    metrics: MonitorMetrics,
    /// The previous snapshot of each target; the lock also keeps rounds from overlapping.
    previous: tokio::sync::Mutex<HashMap<String, Snapshot>>,
    /// Pending and firing alerts by (rule, target).
    active: Mutex<HashMap<AlertKey, Alert>>,
    latest: Mutex<HashMap<String, TargetStatus>>,
    changes: broadcast::Sender<Alert>,
}

/// What [`Monitor::new`] needs besides the store and clock.
#[derive(Debug)]
pub struct Setup {
    pub targets: Vec<ScrapeTarget>,
    pub scrape_timeout: Duration,
    pub figures: Figures,
    pub rules: Vec<Rule>,
    pub context: RuleContext,
    pub http: HttpClient,
    pub notifier: Notifier,
}

impl Monitor {
    /// A monitor that carries on with the alerts `store` still has active.
    ///
    /// # Errors
    /// When the active alerts cannot be read.
    pub async fn new(
        store: Store,
        clock: SharedClock,
        setup: Setup,
        registry: &prometheus::Registry,
    ) -> Result<Self, DbErr> {
        let Setup { targets, scrape_timeout, figures, rules, context, http, notifier } = setup;
        let active = store
            .active_alerts()
            .await?
            .into_iter()
            .map(|alert| ((alert.rule.clone(), alert.service.clone()), alert))
            .collect();
        let scrapes = svc_kit::metrics::registered(
            registry,
            IntCounterVec::new(
                Opts::new("xiaowo_monitor_scrapes_total", "Scrapes by target and outcome."),
                &["target", "outcome"],
            ),
        );
        Ok(Self {
            store,
            clock,
            http,
            targets,
            scrape_timeout,
            figures,
            rules,
            context,
            notifier,
            metrics: MonitorMetrics { scrapes },
            previous: tokio::sync::Mutex::new(HashMap::new()),
            active: Mutex::new(active),
            latest: Mutex::new(HashMap::new()),
            changes: broadcast::channel(CHANGE_BUFFER).0,
        })
    }

    /// The rules in force.
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// One collection round (see the module docs).
    ///
    /// # Errors
    /// When storing figures or alerts fails; the round's remaining alert changes are skipped
    /// and retried by the next round.
    pub async fn collect_once(&self) -> Result<(), DbErr> {
        let mut previous = self.previous.lock().await;
        let mut scrapes = tokio::task::JoinSet::new();
        for (index, target) in self.targets.iter().enumerate() {
            let http = self.http.clone();
            let url = format!("{}/metrics", target.url);
            let timeout = self.scrape_timeout;
            scrapes.spawn(async move { (index, http.get(&url, timeout).await) });
        }
        let mut answers = vec![None; self.targets.len()];
        while let Some(joined) = scrapes.join_next().await {
            if let Ok((index, answer)) = joined
                && let Some(slot) = answers.get_mut(index)
            {
                *slot = Some(answer.map_err(|error| error.to_string()));
            }
        }
        let now = self.clock.now_ms();

        let mut rows = Vec::new();
        // Every target, then the domains of multi-domain targets (unless a target has that name).
        let mut readings: Vec<(String, bool, BTreeMap<String, f64>)> = Vec::new();
        let mut domain_readings: BTreeMap<String, (bool, BTreeMap<String, f64>)> = BTreeMap::new();
        for (target, answer) in self.targets.iter().zip(answers) {
            let snapshot = match answer {
                Some(Ok(body)) => {
                    Snapshot::parse(&String::from_utf8_lossy(&body), now).map_err(|error| error.to_string())
                }
                Some(Err(error)) => Err(error),
                None => Err("scrape task failed".to_owned()),
            };
            let mut figures = BTreeMap::new();
            match snapshot {
                Ok(snapshot) => {
                    self.metrics.scrapes.with_label_values(&[&target.name, "ok"]).inc();
                    let computed = self.figures.compute(previous.get(&target.name), &snapshot);
                    figures.extend(computed.total);
                    figures.insert("up".to_owned(), 1.0);
                    for (domain, domain_figures) in computed.by_domain {
                        if !self.targets.iter().any(|other| other.name == domain) {
                            domain_readings.insert(domain, (true, domain_figures.into_iter().collect()));
                        }
                    }
                    previous.insert(target.name.clone(), snapshot);
                }
                Err(error) => {
                    tracing::warn!(target = %target.name, %error, "scrape failed");
                    self.metrics.scrapes.with_label_values(&[&target.name, "failed"]).inc();
                    figures.insert("up".to_owned(), 0.0);
                }
            }
            let up = figures.get("up").is_some_and(|up| *up >= 1.0);
            readings.push((target.name.clone(), up, figures));
        }
        readings.extend(domain_readings.into_iter().map(|(domain, (up, figures))| (domain, up, figures)));
        for (service, _, figures) in &readings {
            rows.extend(figures.iter().map(|(name, value)| (service.clone(), name.clone(), *value)));
        }
        self.store.insert_samples(&rows, now).await?;
        {
            let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
            for (service, up, figures) in &readings {
                let status = TargetStatus {
                    service: service.clone(),
                    up: *up,
                    last_scrape_at: Some(now),
                    figures: figures.clone(),
                };
                latest.insert(service.clone(), status);
            }
        }
        self.evaluate(&readings, now).await
    }

    async fn evaluate(&self, readings: &[(String, bool, BTreeMap<String, f64>)], now: i64) -> Result<(), DbErr> {
        for (service, _, figures) in readings {
            for rule in self.rules.iter().filter(|rule| rule.applies_to(service)) {
                let key = (rule.name.clone(), service.clone());
                let active = self.active.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
                let value = figures.get(&rule.metric).copied();
                match step(rule, service, active.as_ref(), value, now) {
                    Step::Unchanged => {}
                    Step::Started(mut alert) => {
                        alert.alert_id = self.store.insert_alert(&alert).await?;
                        tracing::info!(rule = %alert.rule, service = %alert.service, state = alert.state.as_str(), "alert started");
                        if alert.state == AlertState::Firing {
                            self.notifier.notify(&alert);
                        }
                        self.remember(key, Some(alert));
                    }
                    Step::Fired(alert) => {
                        self.store.update_alert(&alert).await?;
                        tracing::warn!(rule = %alert.rule, service = %alert.service, value = alert.value, "alert firing");
                        self.notifier.notify(&alert);
                        self.remember(key, Some(alert));
                    }
                    Step::Resolved(alert) => {
                        self.store.update_alert(&alert).await?;
                        tracing::info!(rule = %alert.rule, service = %alert.service, "alert resolved");
                        if alert.fired_at.is_some() {
                            self.notifier.notify(&alert);
                        }
                        let _ = self.changes.send(alert);
                        self.remember(key, None);
                    }
                }
            }
        }
        Ok(())
    }

    /// Records the alert now active under `key` (or none) and tells watchers.
    fn remember(&self, key: AlertKey, alert: Option<Alert>) {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        match alert {
            Some(alert) => {
                // No receivers is fine: nobody is watching.
                let _ = self.changes.send(alert.clone());
                active.insert(key, alert);
            }
            None => {
                active.remove(&key);
            }
        }
    }

    /// Collects every `interval` until `shutdown`; the first round comes one interval after
    /// start, when the services in this process are serving.
    pub async fn run_collector(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    if let Err(error) = self.collect_once().await {
                        tracing::error!(%error, "monitoring round failed");
                    }
                }
            }
        }
    }

    /// Deletes samples older than `retention`; how many went.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn purge(&self, retention: Duration) -> Result<u64, DbErr> {
        let cutoff = self.clock.now_ms().saturating_sub(millis(retention));
        self.store.delete_samples_before(cutoff).await
    }

    /// Purges every `interval` until `shutdown`.
    pub async fn run_janitor(self: Arc<Self>, retention: Duration, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => match self.purge(retention).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "old samples deleted"),
                    Err(error) => tracing::error!(%error, "deleting old samples failed"),
                },
            }
        }
    }

    /// Every target's latest state (in configuration order), then each domain reported apart
    /// by a multi-domain target, and the alerts firing now.
    #[must_use]
    pub fn overview(&self) -> (Vec<TargetStatus>, Vec<Alert>) {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let statuses = self
            .targets
            .iter()
            .map(|target| {
                latest.get(&target.name).cloned().unwrap_or_else(|| TargetStatus {
                    service: target.name.clone(),
                    up: false,
                    last_scrape_at: None,
                    figures: BTreeMap::new(),
                })
            })
            .chain({
                let mut others: Vec<TargetStatus> = latest
                    .values()
                    .filter(|status| !self.targets.iter().any(|target| target.name == status.service))
                    .cloned()
                    .collect();
                others.sort_by(|a, b| a.service.cmp(&b.service));
                others
            })
            .collect();
        drop(latest);
        let mut firing: Vec<Alert> = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|alert| alert.state == AlertState::Firing)
            .cloned()
            .collect();
        firing.sort_by_key(|alert| alert.alert_id);
        (statuses, firing)
    }

    /// The monitor's clock, now.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// One series averaged into `step_ms` buckets over `[start_ms, end_ms)`: `(bucket start,
    /// average)` for every bucket holding samples.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown target or metric, an empty or reversed range, a step
    /// under a second or too many steps.
    pub async fn query(
        &self,
        service: &str,
        metric: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<(i64, f64)>, Error> {
        let mut violations = Vec::new();
        if !self.context.services.contains(service) {
            violations.push(Violation::new("service", "not a scrape target or domain"));
        }
        if !self.context.metrics.contains(metric) {
            violations.push(Violation::new("metric", "not a stored metric"));
        }
        if end_ms <= start_ms {
            violations.push(Violation::new("end_time", "must be after start_time"));
        }
        if step_ms < MIN_STEP_MS {
            violations.push(Violation::new("step", "must be at least one second"));
        } else if (end_ms.saturating_sub(start_ms)) / step_ms > MAX_QUERY_STEPS {
            violations.push(Violation::new("step", format!("at most {MAX_QUERY_STEPS} steps per query")));
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let samples = self.store.samples(service, metric, start_ms, end_ms).await?;
        let mut buckets: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
        for (at, value) in samples {
            let bucket = start_ms + (at - start_ms) / step_ms * step_ms;
            let slot = buckets.entry(bucket).or_insert((0.0, 0));
            slot.0 += value;
            slot.1 += 1;
        }
        Ok(buckets.into_iter().map(|(at, (sum, count))| (at, sum / f64::from(count))).collect())
    }

    /// Alerts newest first; the page and the token of the next one.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad page size or token.
    pub async fn list_alerts(
        &self,
        state: Option<AlertState>,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Alert>, Option<String>), Error> {
        let limit = match u64::try_from(page_size) {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(size) if size <= MAX_PAGE_SIZE => size,
            _ => return Err(Violation::new("page_size", format!("0 to {MAX_PAGE_SIZE}")).into()),
        };
        let before_id = if page_token.is_empty() {
            None
        } else {
            match page_token.parse::<i64>() {
                Ok(id) if id > 0 => Some(id),
                _ => return Err(Violation::new("page_token", "not a token from a previous page").into()),
            }
        };
        let alerts = self.store.list_alerts(state, before_id, limit).await?;
        let next = (u64::try_from(alerts.len()).unwrap_or(u64::MAX) == limit)
            .then(|| alerts.last().map(|alert| alert.alert_id.to_string()))
            .flatten();
        Ok((alerts, next))
    }

    /// The alerts active now and a receiver of every later change (subscribed first, so that
    /// nothing falls between the two).
    #[must_use]
    pub fn watch(&self) -> (Vec<Alert>, broadcast::Receiver<Alert>) {
        let receiver = self.changes.subscribe();
        let mut active: Vec<Alert> =
            self.active.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        active.sort_by_key(|alert| alert.alert_id);
        (active, receiver)
    }

    /// `(channel, event, delivered)` of the deliveries recorded for an alert.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn deliveries(&self, alert_id: i64) -> Result<Vec<(String, String, bool)>, DbErr> {
        self.store.deliveries(alert_id).await
    }

    /// Samples of one series in `[start_ms, end_ms)` as stored, oldest first.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn raw_samples(
        &self,
        service: &str,
        metric: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<(i64, f64)>, DbErr> {
        self.store.samples(service, metric, start_ms, end_ms).await
    }
}
