//! The PostgreSQL side of the webhook methods. Several nodes run the dispatcher at once:
//! the fan-out locks the cursor's meta row (`FOR UPDATE`), so one node at a time reads
//! past it and each outbox row is fanned out once; claims take due deliveries with
//! `FOR UPDATE SKIP LOCKED`, so two nodes never claim the same one, and a claim moves
//! `next_attempt_at` to the lease's end, so a claimed delivery is not due again until its
//! node has had the time to send it.

use boxoffice_core::{EventId, UnixMs};
use sqlx::PgConnection;

use super::{OUTBOX_COUNTER, PgStore, lookup_id, next_seq, saturating_db, to_db};
use crate::rows::from_db;
use crate::webhooks::{
    DELIVERY_COLUMNS, DeliveryRow, WEBHOOK_COLUMNS, WebhookRow, delivery_cursor, delivery_page, event_key,
    outcome_columns, sold_out_candidates, sold_out_message, subscribers,
};
use crate::{
    ClaimedDelivery, DeliveryAttempt, FanOut, NewWebhook, Page, Result, StoreError, TOPIC_EVENT_SOLD_OUT,
    WEBHOOK_CURSOR_KEY, Webhook, WebhookDelivery,
};

/// Serialises endpoint registrations, so the count of enabled endpoints that a
/// registration checks cannot change before it commits.
const CREATE_LOCK_KEY: i64 = 0x626f_7768_6b00;

impl PgStore {
    pub(super) async fn wh_outbox_append(
        &self,
        topic: &str,
        key: &str,
        payload: &serde_json::Value,
        now: UnixMs,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let seq = insert_outbox_row(&mut tx, topic, key, &payload.to_string(), to_db(now, "now")?).await?;
        tx.commit().await?;
        Ok(seq)
    }

    pub(super) async fn wh_create(&self, webhook: NewWebhook) -> Result<Option<Webhook>> {
        let events = serde_json::to_string(&webhook.events).expect("a list of strings serializes");
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CREATE_LOCK_KEY).execute(&mut *tx).await?;
        let enabled: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE enabled").fetch_one(&mut *tx).await?;
        if enabled >= i64::from(webhook.max_enabled) {
            return Ok(None);
        }
        let row: WebhookRow = sqlx::query_as(&format!(
            "INSERT INTO webhooks (url, secret, events, enabled, created_at) VALUES ($1, $2, $3, TRUE, $4) \
             RETURNING {WEBHOOK_COLUMNS}"
        ))
        .bind(&webhook.url)
        .bind(&webhook.secret)
        .bind(events)
        .bind(to_db(webhook.created_at, "created_at")?)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        row.into_webhook().map(Some)
    }

    pub(super) async fn wh_list(&self) -> Result<Vec<Webhook>> {
        let rows: Vec<WebhookRow> =
            sqlx::query_as(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id"))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(WebhookRow::into_webhook).collect()
    }

    pub(super) async fn wh_get(&self, id: u64) -> Result<Webhook> {
        let row: Option<WebhookRow> =
            sqlx::query_as(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1"))
                .bind(lookup_id(id)?)
                .fetch_optional(&self.pool)
                .await?;
        row.ok_or(StoreError::NotFound)?.into_webhook()
    }

    pub(super) async fn wh_disable(&self, id: u64, now: UnixMs) -> Result<Webhook> {
        let row: Option<WebhookRow> = sqlx::query_as(&format!(
            "UPDATE webhooks SET enabled = FALSE, disabled_at = COALESCE(disabled_at, $1) WHERE id = $2 \
             RETURNING {WEBHOOK_COLUMNS}"
        ))
        .bind(to_db(now, "now")?)
        .bind(lookup_id(id)?)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or(StoreError::NotFound)?.into_webhook()
    }

    pub(super) async fn wh_fan_out(&self, limit: u32, now: UnixMs) -> Result<FanOut> {
        let now_db = to_db(now, "now")?;
        let mut tx = self.pool.begin().await?;
        // The cursor row first: a second node's fan-out waits here, then reads past
        // what this one moved the cursor to.
        let cursor: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1 FOR UPDATE")
            .bind(WEBHOOK_CURSOR_KEY)
            .fetch_optional(&mut *tx)
            .await?;
        let cursor: i64 = match cursor {
            Some(v) => v.parse().map_err(|_| StoreError::Corrupt(format!("webhook cursor {v:?}")))?,
            None => 0,
        };
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT seq, topic, key, payload, created_at FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(cursor)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(FanOut { read: 0, deliveries: 0, position: from_db(cursor, "webhook cursor")? });
        };
        let hooks: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, events FROM webhooks WHERE enabled").fetch_all(&mut *tx).await?;
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
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) ON CONFLICT DO NOTHING",
                )
                .bind(hook)
                .bind(seq)
                .bind(topic)
                .bind(&ordering)
                .bind(payload)
                .bind(created_at)
                .bind(now_db)
                .execute(&mut *tx)
                .await?;
                deliveries += done.rows_affected() as u32;
            }
        }
        for event in sold_out_candidates(rows.iter().map(|r| (r.1.as_str(), r.3.as_str()))) {
            announce_sold_out(&mut tx, event, now_db).await?;
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(WEBHOOK_CURSOR_KEY)
        .bind(last.to_string())
        .execute(&mut *tx)
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
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "WITH due AS ( \
                 SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id AND w.enabled \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.webhook_id = d.webhook_id \
                     AND o.event_key = d.event_key AND o.status = 'pending' AND o.id < d.id) \
                 ORDER BY d.next_attempt_at, d.id LIMIT $2 \
                 FOR UPDATE OF d SKIP LOCKED) \
             UPDATE webhook_deliveries AS d SET lease = $3, next_attempt_at = $4, attempts = d.attempts + 1, \
                 first_attempt_at = COALESCE(d.first_attempt_at, $1), last_attempt_at = $1 \
             FROM due WHERE d.id = due.id \
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(now_db)
        .bind(i64::from(limit))
        .bind(lease)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let (url, secret): (String, String) =
                sqlx::query_as("SELECT url, secret FROM webhooks WHERE id = $1")
                    .bind(row.webhook_id)
                    .fetch_one(&self.pool)
                    .await?;
            claimed.push(ClaimedDelivery {
                delivery: row.into_delivery()?,
                url,
                secret,
                lease: lease.to_owned(),
            });
        }
        claimed.sort_by_key(|c| (c.delivery.next_attempt_at, c.delivery.id));
        Ok(claimed)
    }

    pub(super) async fn wh_record(&self, attempt: DeliveryAttempt) -> Result<bool> {
        let (status, next) = outcome_columns(attempt.outcome);
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
             last_status_code = $3, last_error = $4, lease = NULL, \
             delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END \
             WHERE id = $6 AND lease = $7 AND status = 'pending'",
        )
        .bind(status)
        .bind(next.map(saturating_db))
        .bind(attempt.status_code.map(i32::from))
        .bind(&attempt.error)
        .bind(to_db(attempt.at, "at")?)
        .bind(lookup_id(attempt.delivery_id)?)
        .bind(&attempt.lease)
        .execute(&self.pool)
        .await?;
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
        let known: Option<i64> = sqlx::query_scalar("SELECT id FROM webhooks WHERE id = $1")
            .bind(webhook)
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound);
        }
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.webhook_id = $1 AND d.id < $2 \
             ORDER BY d.id DESC LIMIT $3"
        ))
        .bind(webhook)
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        delivery_page(rows, limit)
    }

    pub(super) async fn wh_redeliver(
        &self,
        webhook: u64,
        delivery: u64,
        now: UnixMs,
    ) -> Result<WebhookDelivery> {
        let row: Option<DeliveryRow> = sqlx::query_as(&format!(
            "UPDATE webhook_deliveries AS d SET status = 'pending', \
             next_attempt_at = CASE WHEN d.lease IS NOT NULL AND d.next_attempt_at > $1 \
                 THEN d.next_attempt_at ELSE $1 END, \
             first_attempt_at = NULL WHERE d.id = $2 AND d.webhook_id = $3 \
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(to_db(now, "now")?)
        .bind(lookup_id(delivery)?)
        .bind(lookup_id(webhook)?)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or(StoreError::NotFound)?.into_delivery()
    }
}

/// Appends an outbox row in the caller's transaction (taking the outbox counter, so call
/// it last); returns its `seq`.
async fn insert_outbox_row(
    conn: &mut PgConnection,
    topic: &str,
    key: &str,
    payload: &str,
    now: i64,
) -> Result<u64> {
    let seq = next_seq(conn, OUTBOX_COUNTER).await?;
    sqlx::query("INSERT INTO outbox (seq, topic, key, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(seq)
        .bind(topic)
        .bind(key)
        .bind(payload)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    from_db(seq, "outbox seq")
}

/// Announces the event's sell-out once: when every seat has a valid (or scanned) ticket
/// and it was not announced before.
async fn announce_sold_out(conn: &mut PgConnection, event: EventId, now: i64) -> Result<()> {
    let id = to_db(event.0, "event id")?;
    let seats: Option<i64> = sqlx::query_scalar("SELECT seat_count FROM events WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(seats) = seats else { return Ok(()) };
    let sold: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM tickets WHERE event_id = $1 AND status IN ('valid', 'scanned')",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    if sold < seats {
        return Ok(());
    }
    let marked =
        sqlx::query("INSERT INTO sold_out_announced (event_id, at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    if marked.rows_affected() == 1 {
        let payload = sold_out_message(event, seats, from_db(now, "now")?);
        insert_outbox_row(conn, TOPIC_EVENT_SOLD_OUT, &event.to_string(), &payload.to_string(), now).await?;
    }
    Ok(())
}
