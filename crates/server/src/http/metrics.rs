//! `/metrics` in Prometheus format, and the per-route latency histogram.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

const LATENCY_BUCKETS_SECONDS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The process-wide recorder (installed once, shared by every app in the process).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist (a test harness); then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!("boxoffice_holds_total", "Hold requests by outcome");
    metrics::describe_counter!("boxoffice_hold_conflicts_total", "Holds refused because seats were taken");
    metrics::describe_counter!("boxoffice_holds_expired_total", "Holds expired");
    metrics::describe_counter!("boxoffice_holds_released_total", "Holds released by their owner");
    metrics::describe_counter!("boxoffice_confirms_total", "Orders confirmed");
    metrics::describe_counter!("boxoffice_checkouts_total", "Checkouts by outcome");
    metrics::describe_counter!("boxoffice_reconciled_total", "Repairs made by the reconciler, by action");
    metrics::describe_counter!("boxoffice_payment_attempts_total", "Payment attempts recorded before paying");
    metrics::describe_counter!("boxoffice_refunds_total", "Refunds requested (each voids tickets)");
    metrics::describe_counter!("boxoffice_refunded_seats_total", "Tickets voided by refunds");
    metrics::describe_counter!("boxoffice_ticket_scans_total", "Door scans by result");
    metrics::describe_counter!("boxoffice_ticket_mails_total", "Ticket mail by outcome");
    metrics::describe_counter!("boxoffice_webhook_attempts_total", "Webhook delivery attempts made");
    metrics::describe_counter!(
        "boxoffice_webhook_deliveries_total",
        "Webhook delivery attempts by result: delivered, retrying or failed (given up)"
    );
    metrics::describe_histogram!("boxoffice_ticket_delivery_seconds", "Order commit to ticket mail written");
    metrics::describe_histogram!("boxoffice_http_request_duration_seconds", "HTTP request latency by route");
    metrics::describe_gauge!(
        "boxoffice_queue_length",
        "Waiting room entries (pre-queue and waiting) by event"
    );
    metrics::describe_counter!("boxoffice_queue_admitted_total", "Waiting room entries admitted, by event");
    metrics::describe_gauge!("boxoffice_queue_admit_rate", "Configured admissions per second, by event");
    metrics::describe_counter!(
        "boxoffice_queue_expired_total",
        "Waiting room entries expired unpolled, by event"
    );
    metrics::describe_counter!(
        "boxoffice_shed_total",
        "Hold and checkout requests shed at the in-flight limit"
    );
    metrics::describe_counter!("boxoffice_rate_limited_total", "Requests refused by a rate limit, by scope");
    metrics::describe_gauge!("boxoffice_limit", "Configured limits by name");
    metrics::describe_gauge!(
        "boxoffice_backend_up",
        "Whether the backend answered the last readiness check (1) or not (0), by backend"
    );
}
