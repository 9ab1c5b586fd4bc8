//! The SQLite side of the webhook methods: rare writes, on the store's own connection
//! behind the write gate (`BEGIN IMMEDIATE`), so each one sees and changes the database
//! alone.

use boxoffice_core::{EventId, UnixMs};

use super::{GatedTx, SqliteStore, lookup_id, saturating_db, to_db};
use crate::rows::from_db;
use crate::webhooks::{
    DELIVERY_COLUMNS, DELIVERY_RETURNING, DeliveryRow, WEBHOOK_COLUMNS, WebhookRow, delivery_cursor,
    delivery_page, event_key, outcome_columns, sold_out_candidates, sold_out_message, subscribers,
};
use crate::{
    ClaimedDelivery, DeliveryAttempt, DeliveryStatus, FanOut, NewWebhook, Page, Result, StoreError,
    TOPIC_EVENT_SOLD_OUT, WEBHOOK_CURSOR_KEY, Webhook, WebhookDelivery,
};

impl SqliteStore {
    pub(super) async fn wh_outbox_append(
        &self,
        topic: &str,
        key: &str,
        payload: &serde_json::Value,
        now: UnixMs,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let seq = insert_outbox_row(&mut tx, topic, key, &payload.to_string(), to_db(now, "now")?).await?;
        tx.commit().await?;
        Ok(seq)
    }

    pub(super) async fn wh_create(&self, webhook: NewWebhook) -> Result<Option<Webhook>> {
        let events = serde_json::to_string(&webhook.events).expect("a list of strings serializes");
        let mut tx = self.begin_write().await?;
        let enabled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE enabled = 1")
            .fetch_one(&mut *tx.tx)
            .await?;
        if enabled >= i64::from(webhook.max_enabled) {
            return Ok(None);
        }
        let row: WebhookRow = sqlx::query_as(&format!(
            "INSERT INTO webhooks (url, secret, events, enabled, created_at) VALUES (?, ?, ?, 1, ?) \
             RETURNING {WEBHOOK_COLUMNS}"
        ))
        .bind(&webhook.url)
        .bind(&webhook.secret)
        .bind(events)
        .bind(to_db(webhook.created_at, "created_at")?)
        .fetch_one(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        row.into_webhook().map(Some)
    }

    pub(super) async fn wh_list(&self) -> Result<Vec<Webhook>> {
        let rows: Vec<WebhookRow> =
            sqlx::query_as(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id"))
                .fetch_all(&self.reader)
                .await?;
        rows.into_iter().map(WebhookRow::into_webhook).collect()
    }

    pub(super) async fn wh_get(&self, id: u64) -> Result<Webhook> {
        let row: Option<WebhookRow> =
            sqlx::query_as(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?"))
                .bind(lookup_id(id)?)
                .fetch_optional(&self.reader)
                .await?;
        row.ok_or(StoreError::NotFound)?.into_webhook()
    }

    pub(super) async fn wh_disable(&self, id: u64, now: UnixMs) -> Result<Webhook> {
        let mut tx = self.begin_write().await?;
        let row: Option<WebhookRow> = sqlx::query_as(&format!(
            "UPDATE webhooks SET enabled = 0, disabled_at = COALESCE(disabled_at, ?) WHERE id = ? \
             RETURNING {WEBHOOK_COLUMNS}"
        ))
        .bind(to_db(now, "now")?)
        .bind(lookup_id(id)?)
        .fetch_optional(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        row.ok_or(StoreError::NotFound)?.into_webhook()
    }

    pub(super) async fn wh_fan_out(&self, limit: u32, now: UnixMs) -> Result<FanOut> {
        let now_db = to_db(now, "now")?;
        // Read first, without the write lock: most steps find nothing new, and must not
        // make the writer thread (orders, holds' audit rows) wait for them.
        let (cursor, head): (Option<String>, Option<i64>) =
            sqlx::query_as("SELECT (SELECT value FROM meta WHERE key = ?), (SELECT MAX(seq) FROM outbox)")
                .bind(WEBHOOK_CURSOR_KEY)
                .fetch_one(&self.reader)
                .await?;
        let seen = cursor.as_deref().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        if head.is_none_or(|head| head <= seen) {
            return Ok(FanOut { read: 0, deliveries: 0, position: from_db(seen, "webhook cursor")? });
        }
        let mut tx = self.begin_write().await?;
        let cursor: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(WEBHOOK_CURSOR_KEY)
            .fetch_optional(&mut *tx.tx)
            .await?;
        let cursor: i64 = match cursor {
            Some(v) => v.parse().map_err(|_| StoreError::Corrupt(format!("webhook cursor {v:?}")))?,
            None => 0,
        };
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT seq, topic, key, payload, created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(cursor)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx.tx)
        .await?;
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(FanOut { read: 0, deliveries: 0, position: from_db(cursor, "webhook cursor")? });
        };
        let hooks: Vec<(i64, String)> = sqlx::query_as("SELECT id, events FROM webhooks WHERE enabled = 1")
            .fetch_all(&mut *tx.tx)
            .await?;
        let hooks = hooks
            .into_iter()
            .map(|(id, events)| Ok((id, crate::webhooks::parse_events(&events)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut deliveries = 0u32;
        for (seq, topic, key, payload, created_at) in &rows {
            let ordering = event_key(payload, key);
            for hook in subscribers(&hooks, topic) {
                let done = sqlx::query(
                    "INSERT INTO webhook_deliveries (webhook_id, outbox_seq, type, event_key, payload, \
                     message_created_at, status, attempts, next_attempt_at, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(hook)
                .bind(seq)
                .bind(topic)
                .bind(&ordering)
                .bind(payload)
                .bind(created_at)
                .bind(now_db)
                .bind(now_db)
                .execute(&mut *tx.tx)
                .await?;
                deliveries += done.rows_affected() as u32;
            }
        }
        // After the order that sold the last seat, in the same step: exactly once, since
        // the marker and the cursor commit together.
        for event in sold_out_candidates(rows.iter().map(|r| (r.1.as_str(), r.3.as_str()))) {
            announce_sold_out(&mut tx, event, now_db).await?;
        }
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(WEBHOOK_CURSOR_KEY)
            .bind(last.to_string())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(FanOut { read: rows.len() as u32, deliveries, position: from_db(last, "outbox seq")? })
    }

    pub(super) async fn wh_claim(
        &self,
        now: UnixMs,
        lease_ms: u64,
        limit: u32,
        lease: &str,
    ) -> Result<Vec<ClaimedDelivery>> {
        let now_db = to_db(now, "now")?;
        let until = saturating_db(now.saturating_add(lease_ms));
        // As in the fan-out: the write lock only when something is due.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? LIMIT 1",
        )
        .bind(now_db)
        .fetch_optional(&self.reader)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let due: Vec<i64> = sqlx::query_scalar(
            "SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id AND w.enabled = 1 \
             WHERE d.status = 'pending' AND d.next_attempt_at <= ? \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.webhook_id = d.webhook_id \
                 AND o.event_key = d.event_key AND o.status = 'pending' AND o.id < d.id) \
             ORDER BY d.next_attempt_at, d.id LIMIT ?",
        )
        .bind(now_db)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for id in due {
            let row: DeliveryRow = sqlx::query_as(&format!(
                "UPDATE webhook_deliveries SET lease = ?, next_attempt_at = ?, attempts = attempts + 1, \
                 first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ? WHERE id = ? \
                 RETURNING {DELIVERY_RETURNING}"
            ))
            .bind(lease)
            .bind(until)
            .bind(now_db)
            .bind(now_db)
            .bind(id)
            .fetch_one(&mut *tx.tx)
            .await?;
            let (url, secret): (String, String) =
                sqlx::query_as("SELECT url, secret FROM webhooks WHERE id = ?")
                    .bind(row.webhook_id)
                    .fetch_one(&mut *tx.tx)
                    .await?;
            claimed.push(ClaimedDelivery {
                delivery: row.into_delivery()?,
                url,
                secret,
                lease: lease.to_owned(),
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    pub(super) async fn wh_record(&self, attempt: DeliveryAttempt) -> Result<bool> {
        let (status, next) = outcome_columns(attempt.outcome);
        let at = to_db(attempt.at, "at")?;
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = ?, next_attempt_at = COALESCE(?, next_attempt_at), \
             last_status_code = ?, last_error = ?, lease = NULL, \
             delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END \
             WHERE id = ? AND lease = ? AND status = 'pending'",
        )
        .bind(status)
        .bind(next.map(saturating_db))
        .bind(attempt.status_code.map(i32::from))
        .bind(&attempt.error)
        .bind(status)
        .bind(at)
        .bind(lookup_id(attempt.delivery_id)?)
        .bind(&attempt.lease)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn wh_deliveries(
        &self,
        webhook: u64,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<WebhookDelivery>> {
        let before = delivery_cursor(cursor)?;
        let webhook = lookup_id(webhook)?;
        let known: Option<i64> = sqlx::query_scalar("SELECT id FROM webhooks WHERE id = ?")
            .bind(webhook)
            .fetch_optional(&self.reader)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound);
        }
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.webhook_id = ? AND d.id < ? \
             ORDER BY d.id DESC LIMIT ?"
        ))
        .bind(webhook)
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await?;
        delivery_page(rows, limit)
    }

    pub(super) async fn wh_redeliver(
        &self,
        webhook: u64,
        delivery: u64,
        now: UnixMs,
    ) -> Result<WebhookDelivery> {
        let mut tx = self.begin_write().await?;
        let row: Option<DeliveryRow> = sqlx::query_as(&format!(
            "UPDATE webhook_deliveries SET status = '{pending}', \
             next_attempt_at = CASE WHEN lease IS NOT NULL AND next_attempt_at > ?1 THEN next_attempt_at ELSE ?1 END, \
             first_attempt_at = NULL WHERE id = ?2 AND webhook_id = ?3 RETURNING {DELIVERY_RETURNING}",
            pending = DeliveryStatus::Pending.as_str()
        ))
        .bind(to_db(now, "now")?)
        .bind(lookup_id(delivery)?)
        .bind(lookup_id(webhook)?)
        .fetch_optional(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        row.ok_or(StoreError::NotFound)?.into_delivery()
    }
}

/// Appends an outbox row in the caller's transaction; returns its `seq`.
async fn insert_outbox_row(tx: &mut GatedTx, topic: &str, key: &str, payload: &str, now: i64) -> Result<u64> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (topic, key, payload, created_at) VALUES (?, ?, ?, ?) RETURNING seq",
    )
    .bind(topic)
    .bind(key)
    .bind(payload)
    .bind(now)
    .fetch_one(&mut *tx.tx)
    .await?;
    from_db(seq, "outbox seq")
}

/// Announces the event's sell-out once: when every seat has a valid (or scanned) ticket
/// and it was not announced before.
async fn announce_sold_out(tx: &mut GatedTx, event: EventId, now: i64) -> Result<()> {
    let id = to_db(event.0, "event id")?;
    let seats: Option<i64> = sqlx::query_scalar("SELECT seat_count FROM events WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx.tx)
        .await?;
    let Some(seats) = seats else { return Ok(()) };
    let sold: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM tickets WHERE event_id = ? AND status IN ('valid', 'scanned')",
    )
    .bind(id)
    .fetch_one(&mut *tx.tx)
    .await?;
    if sold < seats {
        return Ok(());
    }
    let marked =
        sqlx::query("INSERT INTO sold_out_announced (event_id, at) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
    if marked.rows_affected() == 1 {
        let payload = sold_out_message(event, seats, from_db(now, "now")?);
        insert_outbox_row(tx, TOPIC_EVENT_SOLD_OUT, &event.to_string(), &payload.to_string(), now).await?;
    }
    Ok(())
}
