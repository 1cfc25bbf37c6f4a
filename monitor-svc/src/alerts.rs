//! The alert life cycle, as a pure step function over one rule, one target and one reading:
//! pending while the condition holds for less than the rule's for-duration, firing after it,
//! resolved once it stops holding. No state change, no notification, so a firing alert is
//! announced once however long it lasts.

use svc_kit::clock::millis;

use crate::rules::{Rule, Severity};

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    /// The name stored in the database and sent in notifications.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }

    /// The inverse of [`AlertState::as_str`].
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "firing" => Some(Self::Firing),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// An alert. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Assigned by the store; 0 before the alert is first saved.
    pub alert_id: i64,
    pub rule: String,
    pub service: String,
    pub severity: Severity,
    pub state: AlertState,
    pub message: String,
    /// The metric's value at the last state change.
    pub value: f64,
    pub threshold: f64,
    pub started_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

/// What one evaluation did to an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing changed (including: no reading this round, so nothing is known).
    Unchanged,
    /// The condition started holding: a new alert, pending, or firing at once when the rule
    /// has no for-duration.
    Started(Alert),
    /// A pending alert held long enough and fires.
    Fired(Alert),
    /// The condition stopped holding; `fired_at` tells whether anyone was told it fired.
    Resolved(Alert),
}

/// Evaluates `rule` for `service` at `now_ms` given the `active` alert (pending or firing) and
/// the latest `value` of the rule's metric.
#[must_use]
pub fn step(rule: &Rule, service: &str, active: Option<&Alert>, value: Option<f64>, now_ms: i64) -> Step {
    let Some(value) = value else { return Step::Unchanged };
    let holds = rule.comparison.holds(value, rule.threshold);
    let due = |started_at: i64| now_ms.saturating_sub(started_at) >= millis(rule.for_duration);
    match (active, holds) {
        (None, false) => Step::Unchanged,
        (None, true) => {
            let fires = due(now_ms);
            Step::Started(Alert {
                alert_id: 0,
                rule: rule.name.clone(),
                service: service.to_owned(),
                severity: rule.severity,
                state: if fires { AlertState::Firing } else { AlertState::Pending },
                message: rule.message.clone(),
                value,
                threshold: rule.threshold,
                started_at: now_ms,
                fired_at: fires.then_some(now_ms),
                resolved_at: None,
            })
        }
        (Some(alert), true) => {
            if alert.state == AlertState::Pending && due(alert.started_at) {
                Step::Fired(Alert { state: AlertState::Firing, value, fired_at: Some(now_ms), ..alert.clone() })
            } else {
                Step::Unchanged
            }
        }
        (Some(alert), false) => {
            Step::Resolved(Alert { state: AlertState::Resolved, value, resolved_at: Some(now_ms), ..alert.clone() })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rules::Comparison;

    fn rule(for_secs: u64) -> Rule {
        Rule {
            name: "Slow".to_owned(),
            metric: "latency_p99_seconds".to_owned(),
            service: None,
            comparison: Comparison::Greater,
            threshold: 0.5,
            for_duration: Duration::from_secs(for_secs),
            severity: Severity::Warning,
            message: "slow".to_owned(),
        }
    }

    fn started(step: Step) -> Alert {
        match step {
            Step::Started(alert) => alert,
            other => panic!("expected a new alert, got {other:?}"),
        }
    }

    #[test]
    fn pending_then_firing_after_the_for_duration_then_resolved() {
        let rule = rule(60);
        assert_eq!(step(&rule, "room", None, Some(0.1), 0), Step::Unchanged);
        let pending = started(step(&rule, "room", None, Some(0.9), 1_000));
        assert_eq!((pending.state, pending.started_at, pending.fired_at), (AlertState::Pending, 1_000, None));

        assert_eq!(step(&rule, "room", Some(&pending), Some(0.8), 60_999), Step::Unchanged, "not yet due");
        assert_eq!(step(&rule, "room", Some(&pending), None, 70_000), Step::Unchanged, "no reading");
        let Step::Fired(firing) = step(&rule, "room", Some(&pending), Some(0.7), 61_000) else { panic!("should fire") };
        assert_eq!((firing.state, firing.fired_at), (AlertState::Firing, Some(61_000)));

        assert_eq!(step(&rule, "room", Some(&firing), Some(0.9), 500_000), Step::Unchanged, "fires once");
        let Step::Resolved(resolved) = step(&rule, "room", Some(&firing), Some(0.2), 600_000) else {
            panic!("should resolve")
        };
        assert_eq!(
            (resolved.state, resolved.resolved_at, resolved.fired_at),
            (AlertState::Resolved, Some(600_000), Some(61_000))
        );
    }

    #[test]
    fn a_pending_alert_that_clears_never_fired() {
        let rule = rule(60);
        let pending = started(step(&rule, "room", None, Some(0.9), 0));
        let Step::Resolved(resolved) = step(&rule, "room", Some(&pending), Some(0.1), 30_000) else {
            panic!("should clear")
        };
        assert_eq!(resolved.fired_at, None);
    }

    #[test]
    fn no_for_duration_fires_at_once() {
        let firing = started(step(&rule(0), "room", None, Some(0.9), 5));
        assert_eq!((firing.state, firing.fired_at), (AlertState::Firing, Some(5)));
    }
}
