//! The only code that touches monitor-svc's tables.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, NotSet, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};

use crate::alerts::{Alert, AlertState};
use crate::entity::{alert, metric_sample, notification};
use crate::rules::Severity;

/// Access to the `metrics`, `alerts` and `notifications` tables.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
}

/// One delivery outcome to record.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub alert_id: i64,
    pub channel: &'static str,
    pub event: AlertState,
    pub attempts: u32,
    pub delivered: bool,
    pub last_error: String,
    pub recorded_at: i64,
}

fn to_alert(model: alert::Model) -> Alert {
    let alert::Model {
        id,
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
    } = model;
    Alert {
        alert_id: id,
        rule,
        service,
        // Rows are only written from these enums; an unknown word can only come from a hand
        // edit, and reads as the most cautious value.
        severity: Severity::parse(&severity).unwrap_or(Severity::Critical),
        state: AlertState::parse(&state).unwrap_or(AlertState::Firing),
        message,
        value,
        threshold,
        started_at,
        fired_at,
        resolved_at,
    }
}

fn to_model(alert: &Alert) -> alert::ActiveModel {
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
    alert::ActiveModel {
        id: if *alert_id == 0 { NotSet } else { Set(*alert_id) },
        rule: Set(rule.clone()),
        service: Set(service.clone()),
        severity: Set(severity.as_str().to_owned()),
        state: Set(state.as_str().to_owned()),
        message: Set(message.clone()),
        value: Set(*value),
        threshold: Set(*threshold),
        started_at: Set(*started_at),
        fired_at: Set(*fired_at),
        resolved_at: Set(*resolved_at),
    }
}

impl Store {
    /// Wraps a migrated connection.
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Stores one round of figures, all or none.
    pub async fn insert_samples(&self, samples: &[(String, String, f64)], recorded_at: i64) -> Result<(), DbErr> {
        if samples.is_empty() {
            return Ok(());
        }
        let rows = samples.iter().map(|(service, name, value)| metric_sample::ActiveModel {
            id: NotSet,
            service: Set(service.clone()),
            name: Set(name.clone()),
            value: Set(*value),
            recorded_at: Set(recorded_at),
        });
        let transaction = self.db.begin().await?;
        metric_sample::Entity::insert_many(rows).exec(&transaction).await?;
        transaction.commit().await
    }

    /// `(recorded_at, value)` of one series in `[start, end)`, oldest first.
    pub async fn samples(&self, service: &str, name: &str, start: i64, end: i64) -> Result<Vec<(i64, f64)>, DbErr> {
        use metric_sample::Column;
        metric_sample::Entity::find()
            .select_only()
            .column(Column::RecordedAt)
            .column(Column::Value)
            .filter(Column::Service.eq(service))
            .filter(Column::Name.eq(name))
            .filter(Column::RecordedAt.gte(start))
            .filter(Column::RecordedAt.lt(end))
            .order_by_asc(Column::RecordedAt)
            .into_tuple()
            .all(&self.db)
            .await
    }

    /// Deletes samples recorded before `cutoff`; how many went.
    pub async fn delete_samples_before(&self, cutoff: i64) -> Result<u64, DbErr> {
        let result = metric_sample::Entity::delete_many()
            .filter(metric_sample::Column::RecordedAt.lt(cutoff))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// Saves a new alert; its id.
    pub async fn insert_alert(&self, alert: &Alert) -> Result<i64, DbErr> {
        let mut model = to_model(alert);
        model.id = NotSet;
        Ok(model.insert(&self.db).await?.id)
    }

    /// Saves an alert's new state.
    pub async fn update_alert(&self, alert: &Alert) -> Result<(), DbErr> {
        to_model(alert).update(&self.db).await?;
        Ok(())
    }

    /// Alerts still pending or firing (to carry on after a restart).
    pub async fn active_alerts(&self) -> Result<Vec<Alert>, DbErr> {
        let rows = alert::Entity::find()
            .filter(alert::Column::State.is_in([AlertState::Pending.as_str(), AlertState::Firing.as_str()]))
            .order_by_asc(alert::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(to_alert).collect())
    }

    /// Up to `limit` alerts, newest first, with ids below `before_id`, optionally in one state.
    pub async fn list_alerts(
        &self,
        state: Option<AlertState>,
        before_id: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Alert>, DbErr> {
        let mut query = alert::Entity::find();
        if let Some(state) = state {
            query = query.filter(alert::Column::State.eq(state.as_str()));
        }
        if let Some(before_id) = before_id {
            query = query.filter(alert::Column::Id.lt(before_id));
        }
        let rows = query.order_by_desc(alert::Column::Id).limit(limit).all(&self.db).await?;
        Ok(rows.into_iter().map(to_alert).collect())
    }

    /// Records how a delivery went.
    pub async fn record_delivery(&self, delivery: Delivery) -> Result<(), DbErr> {
        let Delivery { alert_id, channel, event, attempts, delivered, last_error, recorded_at } = delivery;
        notification::ActiveModel {
            id: NotSet,
            alert_id: Set(alert_id),
            channel: Set(channel.to_owned()),
            event: Set(event.as_str().to_owned()),
            attempts: Set(i32::try_from(attempts).unwrap_or(i32::MAX)),
            delivered: Set(delivered),
            last_error: Set(last_error),
            recorded_at: Set(recorded_at),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// `(channel, event, delivered)` of every delivery recorded for `alert_id`, oldest first.
    pub async fn deliveries(&self, alert_id: i64) -> Result<Vec<(String, String, bool)>, DbErr> {
        use notification::Column;
        notification::Entity::find()
            .select_only()
            .column(Column::Channel)
            .column(Column::Event)
            .column(Column::Delivered)
            .filter(Column::AlertId.eq(alert_id))
            .order_by_asc(Column::Id)
            .into_tuple()
            .all(&self.db)
            .await
    }
}
