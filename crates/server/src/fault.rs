//! Fault injection for crash tests.
//!
//! `BOXOFFICE_FAULT=<point>` makes the server abort (`std::process::abort`: no
//! destructor, no flush, no graceful shutdown, like `kill -9`) the first time the code
//! reaches that point. It is off by default (unset or empty), read once at start-up
//! ([`init`], called by `Application::build`), and an unknown point refuses to start, so
//! that a misspelt point cannot make a crash test pass without crashing. The points are
//! listed in [`POINTS`]; each is a [`hit`] call at the step it names. See
//! `docs/testing.md`.

use std::sync::OnceLock;

/// The environment variable that names the point to abort at.
pub const ENV: &str = "BOXOFFICE_FAULT";

/// Every point a [`hit`] call names.
pub const POINTS: &[&str] = &[
    // The hold is pinned (CONFIRMING); no payment attempt is on record yet.
    "checkout.after_pin",
    // The payment attempt is committed; the gateway has not heard of it.
    "checkout.after_attempt",
    // The gateway authorized the payment; the attempt still says `initiated`.
    "checkout.after_authorize",
    // The attempt is `authorized` on record; the order is not committed.
    "checkout.after_authorized_recorded",
    // The order, its tickets and its outbox row are committed; the engine still has the
    // seats CONFIRMING.
    "checkout.after_commit",
    // The engine has the seats SOLD; the payment is not captured.
    "checkout.after_confirm",
    // The ticket worker wrote the mail of a message and more messages of its batch are
    // left (none of the batch acknowledged or its position saved).
    "ticket_worker.mid_batch",
];

static POINT: OnceLock<Option<&'static str>> = OnceLock::new();

/// Reads [`ENV`] (once per process) and returns the configured point; an error names an
/// unknown one.
pub fn init() -> Result<Option<&'static str>, String> {
    let point = *POINT.get_or_init(|| {
        let wanted = std::env::var(ENV).ok().filter(|p| !p.trim().is_empty())?;
        Some(POINTS.iter().copied().find(|p| *p == wanted.trim()).unwrap_or_else(|| {
            // Kept (leaked once) only to be refused below.
            Box::leak(wanted.into_boxed_str())
        }))
    });
    match point {
        None => Ok(None),
        Some(p) if POINTS.contains(&p) => {
            tracing::warn!(point = p, "fault injection is on: the process aborts when it reaches this point");
            Ok(Some(p))
        }
        Some(p) => Err(format!("{ENV}={p:?} is not a fault point; known points: {}", POINTS.join(", "))),
    }
}

/// Aborts the process if `point` is the configured fault point; does nothing otherwise
/// (and always when [`init`] was not called).
#[inline]
pub fn hit(point: &'static str) {
    debug_assert!(POINTS.contains(&point), "unlisted fault point {point}");
    if let Some(Some(configured)) = POINT.get()
        && *configured == point
    {
        // Unbuffered, so the line is out before the abort; the crash tests look for it.
        eprintln!("boxoffice fault injected at {point}: aborting");
        std::process::abort();
    }
}
