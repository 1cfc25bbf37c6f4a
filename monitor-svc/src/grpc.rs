//! The gRPC edge: protobuf in, domain calls, protobuf out. Nothing else knows `proto`.

use std::pin::Pin;
use std::sync::Arc;

use proto::monitor::v1 as pb;
use svc_kit::clock::millis;
use svc_kit::status::Violation;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// The range `QueryMetric` covers when the caller names no start: the last hour.
const DEFAULT_RANGE_MS: i64 = 3_600_000;

use crate::Error;
use crate::alerts::{Alert, AlertState};
use crate::monitor::{Monitor, TargetStatus};
use crate::rules::{Comparison, Rule, Severity};

fn severity_to_pb(severity: Severity) -> pb::Severity {
    match severity {
        Severity::Info => pb::Severity::Info,
        Severity::Warning => pb::Severity::Warning,
        Severity::Critical => pb::Severity::Critical,
    }
}

fn state_to_pb(state: AlertState) -> pb::AlertState {
    match state {
        AlertState::Pending => pb::AlertState::Pending,
        AlertState::Firing => pb::AlertState::Firing,
        AlertState::Resolved => pb::AlertState::Resolved,
    }
}

fn comparison_to_pb(comparison: Comparison) -> pb::Comparison {
    match comparison {
        Comparison::Greater => pb::Comparison::Greater,
        Comparison::GreaterOrEqual => pb::Comparison::GreaterOrEqual,
        Comparison::Less => pb::Comparison::Less,
        Comparison::LessOrEqual => pb::Comparison::LessOrEqual,
        Comparison::Equal => pb::Comparison::Equal,
        Comparison::NotEqual => pb::Comparison::NotEqual,
    }
}

fn duration_to_pb(duration: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

fn alert_to_pb(alert: Alert) -> pb::Alert {
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
    pb::Alert {
        alert_id,
        rule,
        service,
        severity: severity_to_pb(severity).into(),
        state: state_to_pb(state).into(),
        message,
        value,
        threshold,
        start_time: Some(proto::timestamp_from_ms(started_at)),
        fire_time: fired_at.map(proto::timestamp_from_ms),
        resolve_time: resolved_at.map(proto::timestamp_from_ms),
    }
}

fn rule_to_pb(rule: &Rule) -> pb::Rule {
    let Rule { name, metric, service, comparison, threshold, for_duration, severity, message } = rule;
    pb::Rule {
        name: name.clone(),
        metric: metric.clone(),
        service: service.clone().unwrap_or_default(),
        comparison: comparison_to_pb(*comparison).into(),
        threshold: *threshold,
        for_duration: Some(duration_to_pb(*for_duration)),
        severity: severity_to_pb(*severity).into(),
        message: message.clone(),
    }
}

fn status_to_pb(status: TargetStatus) -> pb::ServiceOverview {
    let TargetStatus { service, up, last_scrape_at, figures } = status;
    pb::ServiceOverview {
        service,
        up,
        last_scrape_time: last_scrape_at.map(proto::timestamp_from_ms),
        figures: figures.into_iter().collect(),
    }
}

fn state_from_pb(state: i32) -> Result<Option<AlertState>, Violation> {
    match pb::AlertState::try_from(state) {
        Ok(pb::AlertState::Unspecified) => Ok(None),
        Ok(pb::AlertState::Pending) => Ok(Some(AlertState::Pending)),
        Ok(pb::AlertState::Firing) => Ok(Some(AlertState::Firing)),
        Ok(pb::AlertState::Resolved) => Ok(Some(AlertState::Resolved)),
        Err(_) => Err(Violation::new("state", "unknown alert state")),
    }
}

/// `xiaowo.monitor.v1.MonitorService`; every call needs the admin token (its guard checks it).
#[derive(Debug, Clone)]
pub struct MonitorApi {
    pub(crate) monitor: Arc<Monitor>,
    pub(crate) shutdown: CancellationToken,
}

type AlertStream = Pin<Box<dyn Stream<Item = Result<pb::WatchAlertsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::monitor_service_server::MonitorService for MonitorApi {
    #[tracing::instrument(skip_all)]
    async fn get_overview(
        &self,
        request: Request<pb::GetOverviewRequest>,
    ) -> Result<Response<pb::GetOverviewResponse>, Status> {
        let pb::GetOverviewRequest {} = request.into_inner();
        let (statuses, firing) = self.monitor.overview();
        Ok(Response::new(pb::GetOverviewResponse {
            services: statuses.into_iter().map(status_to_pb).collect(),
            firing_alerts: firing.into_iter().map(alert_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(service, metric))]
    async fn query_metric(
        &self,
        request: Request<pb::QueryMetricRequest>,
    ) -> Result<Response<pb::QueryMetricResponse>, Status> {
        let pb::QueryMetricRequest { service, metric, start_time, end_time, step } = request.into_inner();
        tracing::Span::current().record("service", service.as_str()).record("metric", metric.as_str());
        // Left out, the range is the last hour in sixty buckets: what one asks for first.
        let end_ms = end_time.as_ref().map_or_else(|| self.monitor.now_ms(), proto::ms_from_timestamp);
        let start_ms = start_time.as_ref().map_or(end_ms.saturating_sub(DEFAULT_RANGE_MS), proto::ms_from_timestamp);
        let step_ms = match step.map(std::time::Duration::try_from) {
            Some(Ok(step)) => millis(step),
            // A negative step is refused with the other violations, as one below a second.
            Some(Err(_)) => 0,
            None => (end_ms.saturating_sub(start_ms) / 60).max(1000),
        };
        let points = self.monitor.query(&service, &metric, start_ms, end_ms, step_ms).await?;
        Ok(Response::new(pb::QueryMetricResponse {
            points: points
                .into_iter()
                .map(|(at, value)| pb::MetricPoint { time: Some(proto::timestamp_from_ms(at)), value })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let pb::ListAlertsRequest { state, page_size, page_token } = request.into_inner();
        let state = state_from_pb(state).map_err(Error::from)?;
        let (alerts, next) = self.monitor.list_alerts(state, page_size, &page_token).await?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: alerts.into_iter().map(alert_to_pb).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let pb::ListRulesRequest {} = request.into_inner();
        Ok(Response::new(pb::ListRulesResponse { rules: self.monitor.rules().iter().map(rule_to_pb).collect() }))
    }

    type WatchAlertsStream = AlertStream;

    #[tracing::instrument(skip_all)]
    async fn watch_alerts(
        &self,
        request: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let pb::WatchAlertsRequest {} = request.into_inner();
        let (active, mut changes) = self.monitor.watch();
        let (sender, receiver) = mpsc::channel(64);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            for alert in active {
                let message = pb::WatchAlertsResponse { alert: Some(alert_to_pb(alert)), snapshot: true };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            loop {
                let alert = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = sender.closed() => return,
                    change = changes.recv() => match change {
                        Ok(alert) => alert,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            // The client fell behind; it must reconnect for a fresh snapshot.
                            let _ = sender.send(Err(Status::data_loss(format!("missed {missed} alert changes; watch again")))).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                let message = pb::WatchAlertsResponse { alert: Some(alert_to_pb(alert)), snapshot: false };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
