//! After the run: reads what the server says (the availability bitmap, then every
//! user's orders, then the status of every hold the run left open) for the oversell
//! [`audit`](crate::audit::audit), and releases the holds left open so that the next run
//! starts from a clean event.

use std::sync::Arc;

use hyper::Method;
use hyper::header::HeaderValue;
use serde::Deserialize;

use crate::LoadError;
use crate::api::{self, Api, ApiConn, COORDINATOR_LANES, parse, snippet};
use crate::audit::{self, AuditInput, AuditLog, AuditReport, OrderFacts, SeenStatus, TicketFacts};
use crate::report::Cleanup;
use crate::worker::Plan;

/// Most order pages read per user.
const MAX_ORDER_PAGES: usize = 10_000;

#[derive(Deserialize)]
struct OrdersPage {
    items: Vec<OrderJson>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct OrderJson {
    order_id: String,
    event_id: String,
    hold_id: String,
    tickets: Vec<TicketJson>,
}

#[derive(Deserialize)]
struct TicketJson {
    ticket_id: String,
    seat_index: u32,
    status: String,
}

#[derive(Deserialize)]
struct HoldStatusAnswer {
    status: String,
}

/// Percent-encodes a query value.
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One user's orders for `event`, every page.
async fn user_orders(
    conn: &mut ApiConn,
    auth: &HeaderValue,
    user: u32,
    event: &str,
) -> Result<Vec<OrderFacts>, LoadError> {
    let mut orders = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_ORDER_PAGES {
        let path = match &cursor {
            None => "/v1/me/orders?limit=100".to_owned(),
            Some(c) => format!("/v1/me/orders?limit=100&cursor={}", encode_query(c)),
        };
        let reply = conn.get(&path, Some(auth)).await?;
        if reply.status != 200 {
            return Err(LoadError::Protocol(format!(
                "GET {path} answered {}: {}",
                reply.status,
                snippet(&reply.body)
            )));
        }
        let page: OrdersPage = parse(&reply, "GET /v1/me/orders")?;
        for order in page.items.into_iter().filter(|o| o.event_id == event) {
            orders.push(OrderFacts {
                order_id: order.order_id,
                hold_id: order.hold_id,
                user,
                tickets: order
                    .tickets
                    .into_iter()
                    .map(|t| TicketFacts {
                        ticket_id: t.ticket_id,
                        seat: t.seat_index,
                        valid: t.status == "valid" || t.status == "scanned",
                    })
                    .collect(),
            });
        }
        match page.next_cursor {
            Some(next) if !next.is_empty() => cursor = Some(next),
            _ => return Ok(orders),
        }
    }
    Err(LoadError::Protocol(format!("more than {MAX_ORDER_PAGES} pages of orders for one user")))
}

/// Reads the bitmap, then the orders of every user, then the status of every open hold,
/// and judges them.
pub(crate) async fn run_audit(
    api: &Arc<Api>,
    plan: &Arc<Plan>,
    log: &AuditLog,
) -> Result<(AuditReport, Vec<SeenStatus>), LoadError> {
    audit_event(api, &plan.event, &plan.users, &plan.labels, log).await
}

/// [`run_audit`] for any event, its run's users (by index) and its seat labels.
pub(crate) async fn audit_event(
    api: &Arc<Api>,
    event: &str,
    users: &[HeaderValue],
    labels: &[String],
    log: &AuditLog,
) -> Result<(AuditReport, Vec<SeenStatus>), LoadError> {
    let mut conn = ApiConn::new(api.clone());
    let event = event.to_owned();
    let reply = conn.get(&format!("/v1/events/{event}/availability"), None).await?;
    if reply.status != 200 {
        return Err(LoadError::Protocol(format!(
            "GET /v1/events/{event}/availability answered {}: {}",
            reply.status,
            snippet(&reply.body)
        )));
    }
    let bitmap = reply.body.to_vec();

    let seat_count = labels.len() as u32;
    let all_users = users;
    let users: Vec<(u32, HeaderValue)> =
        all_users.iter().cloned().enumerate().map(|(i, h)| (i as u32, h)).collect();
    let per_user =
        api::parallel(api, users, COORDINATOR_LANES, move |mut conn, (user, auth): (u32, HeaderValue)| {
            let event = event.clone();
            async move {
                let result = user_orders(&mut conn, &auth, user, &event).await;
                (conn, result)
            }
        })
        .await?;
    let orders: Vec<OrderFacts> = per_user.into_iter().flatten().collect();

    let statuses = hold_statuses(api, all_users, log).await?;
    let report = audit::audit(&AuditInput {
        seat_count,
        bitmap: &bitmap,
        log,
        orders: &orders,
        statuses: &statuses,
        labels,
    });
    Ok((report, statuses))
}

/// The status of every open hold, as its owner sees it.
async fn hold_statuses(
    api: &Arc<Api>,
    users: &[HeaderValue],
    log: &AuditLog,
) -> Result<Vec<SeenStatus>, LoadError> {
    let items: Vec<(String, Option<HeaderValue>)> =
        log.open.iter().map(|h| (h.hold_id.clone(), users.get(h.user as usize).cloned())).collect();
    api::parallel(
        api,
        items,
        COORDINATOR_LANES,
        |mut conn, (hold_id, auth): (String, Option<HeaderValue>)| async move {
            let status = match conn.get(&format!("/v1/holds/{hold_id}"), auth.as_ref()).await {
                Ok(reply) if reply.status == 200 => {
                    match serde_json::from_slice::<HoldStatusAnswer>(&reply.body) {
                        Ok(answer) => SeenStatus::parse(&answer.status),
                        Err(e) => SeenStatus::Unknown(format!("unreadable hold: {e}")),
                    }
                }
                Ok(reply) if reply.status == 404 => SeenStatus::NotFound,
                Ok(reply) => {
                    SeenStatus::Unknown(format!("GET answered {}: {}", reply.status, snippet(&reply.body)))
                }
                Err(e) => SeenStatus::Unknown(e.to_string()),
            };
            (conn, Ok(status))
        },
    )
    .await
}

/// Releases the holds the run left open (those still held, when their status is known),
/// so that the next run starts from a clean event.
pub(crate) async fn release_leftovers(
    api: &Arc<Api>,
    plan: &Arc<Plan>,
    log: &AuditLog,
    statuses: Option<&[SeenStatus]>,
) -> Result<Cleanup, LoadError> {
    release_open(api, &plan.users, log, statuses).await
}

/// [`release_leftovers`] given the run's users. A hold with several seats is logged once
/// per seat and released once.
pub(crate) async fn release_open(
    api: &Arc<Api>,
    users: &[HeaderValue],
    log: &AuditLog,
    statuses: Option<&[SeenStatus]>,
) -> Result<Cleanup, LoadError> {
    let mut seen = std::collections::HashSet::new();
    let items: Vec<(String, Option<HeaderValue>)> = log
        .open
        .iter()
        .enumerate()
        .filter(|(i, _)| statuses.is_none_or(|s| s.get(*i).is_some_and(SeenStatus::keeps_seat)))
        .filter(|(_, h)| seen.insert(h.hold_id.clone()))
        .map(|(_, h)| (h.hold_id.clone(), users.get(h.user as usize).cloned()))
        .collect();
    let results = api::parallel(
        api,
        items,
        COORDINATOR_LANES,
        |mut conn, (hold_id, auth): (String, Option<HeaderValue>)| async move {
            let released = matches!(
                conn.call(Method::DELETE, &format!("/v1/holds/{hold_id}"), auth.as_ref(), &[], None).await,
                Ok(reply) if reply.status == 204
            );
            (conn, Ok(released))
        },
    )
    .await?;
    let released = results.iter().filter(|&&r| r).count() as u64;
    Ok(Cleanup { released, not_released: results.len() as u64 - released })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query("a b/c+d=é"), "a%20b%2Fc%2Bd%3D%C3%A9");
        assert_eq!(encode_query("Zm9v-_.~"), "Zm9v-_.~");
    }
}
