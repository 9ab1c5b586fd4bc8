//! The oversell audit. During a `holds` or `hot-seats` run the workers log what the server
//! told them ([`AuditLog`]): per seat, how many holds answered 201 and how each ended
//! (released, bought, expired, or still open), the orders of every checkout that
//! answered 201, and every hold left open. At the end the runner fetches the event's
//! availability bitmap, then the orders of every user of the run, then the status of
//! every hold left open (in that order: a hold still `held` after the bitmap was read
//! was held when it was read), and [`audit`] proves, from those facts alone:
//!
//! - no seat is in two valid tickets, and every seat of a valid ticket is unavailable;
//! - every checkout that answered 201 is in its buyer's orders, with that seat;
//! - every hold that answered 201 and was neither released nor bought is unavailable,
//!   or has expired; no seat is held by two holds at once, or held and sold;
//! - every seat whose holds all ended (released or expired) and that was not sold is
//!   available again;
//! - the run's own bookkeeping adds up (201 holds = released + bought + expired + open).
//!
//! Seats whose hold request got no answer (the server may or may not have held them)
//! are excluded from the availability checks and reported. The audit assumes the run
//! was the only client changing the event.

use std::collections::HashMap;

use serde::Serialize;

/// What happened to the holds of one seat during the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SeatTally {
    /// Holds that answered 201.
    pub held: u32,
    /// Of those: released (DELETE answered 204).
    pub released: u32,
    /// Bought (checkout answered 201).
    pub bought: u32,
    /// Found expired (DELETE or checkout answered 410).
    pub expired: u32,
    /// Left open: not released, bought or expired as far as the run knows.
    pub open: u32,
    /// A hold request for this seat got no answer: the server may hold it.
    pub uncertain: bool,
}

/// A hold that answered 201 and was neither released nor bought nor found expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenHold {
    pub hold_id: String,
    pub seat: u32,
    /// Index of the owner in the run's users.
    pub user: u32,
    /// A release was sent but its answer was lost or unexpected.
    pub release_tried: bool,
    /// A checkout was sent but did not answer 201.
    pub checkout_tried: bool,
}

/// A checkout that answered 201.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bought {
    pub order_id: String,
    pub hold_id: String,
    pub seat: u32,
    pub user: u32,
}

/// Most answers kept verbatim for the report.
const MAX_NOTES: usize = 50;

/// Facts logged by the workers.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    /// Indexed by seat; empty for scenarios without an audit.
    pub seats: Vec<SeatTally>,
    pub open: Vec<OpenHold>,
    pub bought: Vec<Bought>,
    /// 2xx answers that contradict the request (e.g. a hold on another seat than asked).
    pub contradictions: Vec<String>,
    pub contradiction_count: u64,
}

impl AuditLog {
    pub fn for_seats(n: u32) -> AuditLog {
        AuditLog { seats: vec![SeatTally::default(); n as usize], ..AuditLog::default() }
    }

    fn seat(&mut self, seat: u32) -> Option<&mut SeatTally> {
        self.seats.get_mut(seat as usize)
    }

    pub fn held(&mut self, seat: u32) {
        if let Some(t) = self.seat(seat) {
            t.held += 1;
        }
    }

    pub fn released(&mut self, seat: u32) {
        if let Some(t) = self.seat(seat) {
            t.released += 1;
        }
    }

    pub fn expired(&mut self, seat: u32) {
        if let Some(t) = self.seat(seat) {
            t.expired += 1;
        }
    }

    pub fn uncertain(&mut self, seat: u32) {
        if let Some(t) = self.seat(seat) {
            t.uncertain = true;
        }
    }

    pub fn bought(&mut self, bought: Bought) {
        if let Some(t) = self.seat(bought.seat) {
            t.bought += 1;
        }
        self.bought.push(bought);
    }

    pub fn left_open(&mut self, hold: OpenHold) {
        if let Some(t) = self.seat(hold.seat) {
            t.open += 1;
        }
        self.open.push(hold);
    }

    pub fn contradiction(&mut self, note: String) {
        self.contradiction_count += 1;
        if self.contradictions.len() < MAX_NOTES {
            self.contradictions.push(note);
        }
    }

    pub fn merge(&mut self, other: &AuditLog) {
        if self.seats.len() < other.seats.len() {
            self.seats.resize(other.seats.len(), SeatTally::default());
        }
        for (a, b) in self.seats.iter_mut().zip(&other.seats) {
            a.held += b.held;
            a.released += b.released;
            a.bought += b.bought;
            a.expired += b.expired;
            a.open += b.open;
            a.uncertain |= b.uncertain;
        }
        self.open.extend(other.open.iter().cloned());
        self.bought.extend(other.bought.iter().cloned());
        for note in &other.contradictions {
            if self.contradictions.len() < MAX_NOTES {
                self.contradictions.push(note.clone());
            }
        }
        self.contradiction_count += other.contradiction_count;
    }
}

/// One ticket of an order, as the order listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFacts {
    pub ticket_id: String,
    pub seat: u32,
    /// Status `valid` (a `scanned` ticket also holds its seat: counted as valid).
    pub valid: bool,
}

/// One order of one of the run's users for the audited event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    pub order_id: String,
    pub hold_id: String,
    pub user: u32,
    pub tickets: Vec<TicketFacts>,
}

/// The status of an open hold as its owner sees it at audit time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeenStatus {
    Held,
    Confirming,
    Confirmed,
    Released,
    Expired,
    /// 404 to its owner.
    NotFound,
    /// The status could not be read (transport failure or unexpected answer).
    Unknown(String),
}

impl SeenStatus {
    pub fn parse(status: &str) -> SeenStatus {
        match status {
            "held" => SeenStatus::Held,
            "confirming" => SeenStatus::Confirming,
            "confirmed" => SeenStatus::Confirmed,
            "released" => SeenStatus::Released,
            "expired" => SeenStatus::Expired,
            other => SeenStatus::Unknown(format!("unknown hold status {other:?}")),
        }
    }

    /// Whether the hold still keeps its seat.
    pub fn keeps_seat(&self) -> bool {
        matches!(self, SeenStatus::Held | SeenStatus::Confirming)
    }
}

/// Everything the audit judges.
pub struct AuditInput<'a> {
    pub seat_count: u32,
    /// The availability bitmap, read after the run.
    pub bitmap: &'a [u8],
    pub log: &'a AuditLog,
    /// Orders of the run's users for this event, read after the bitmap.
    pub orders: &'a [OrderFacts],
    /// The status of each of `log.open`, same order, read after the orders.
    pub statuses: &'a [SeenStatus],
    /// Seat labels by index, for messages (may be empty).
    pub labels: &'a [String],
}

/// One proven (or disproven) property.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    /// How many facts it looked at.
    pub checked: u64,
    pub anomalies: u64,
    /// The first anomalies, spelled out.
    pub examples: Vec<String>,
}

/// Counts that describe what the audit saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditFacts {
    pub holds_created: u64,
    pub holds_released: u64,
    pub holds_bought: u64,
    pub holds_expired: u64,
    pub holds_open: u64,
    pub open_holds_still_held: u64,
    pub uncertain_seats: u64,
    pub orders: u64,
    pub valid_tickets: u64,
    pub available_seats: u64,
    pub seat_count: u32,
}

/// The audit's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub passed: bool,
    pub checks: Vec<Check>,
    pub facts: AuditFacts,
}

impl AuditReport {
    /// A failed audit for when the server's state could not be read.
    pub fn unreadable(why: String) -> AuditReport {
        let check = Check {
            name: "the audit can read the bitmap, the orders and the open holds",
            passed: false,
            checked: 1,
            anomalies: 1,
            examples: vec![why],
        };
        AuditReport { passed: false, checks: vec![check], facts: AuditFacts::default() }
    }

    pub fn anomalies(&self) -> u64 {
        self.checks.iter().map(|c| c.anomalies).sum()
    }
}

struct CheckBuilder {
    check: Check,
}

impl CheckBuilder {
    fn new(name: &'static str) -> CheckBuilder {
        CheckBuilder { check: Check { name, passed: true, checked: 0, anomalies: 0, examples: Vec::new() } }
    }

    fn saw(&mut self) {
        self.check.checked += 1;
    }

    fn anomaly(&mut self, message: impl FnOnce() -> String) {
        self.check.passed = false;
        self.check.anomalies += 1;
        if self.check.examples.len() < 20 {
            self.check.examples.push(message());
        }
    }

    fn done(self) -> Check {
        self.check
    }
}

/// Bit `seat` of the bitmap: `Some(true)` when available, `None` when out of range.
pub fn available(bitmap: &[u8], seat: u32) -> Option<bool> {
    bitmap.get((seat / 8) as usize).map(|byte| byte & (1 << (seat % 8)) != 0)
}

/// Judges the facts; see the module doc for what is proven.
pub fn audit(input: &AuditInput<'_>) -> AuditReport {
    let name = |seat: u32| match input.labels.get(seat as usize) {
        Some(label) => format!("seat {seat} ({label})"),
        None => format!("seat {seat}"),
    };
    let log = input.log;
    let mut checks = Vec::new();

    // The bitmap covers the event.
    let mut size = CheckBuilder::new("the bitmap has one bit per seat");
    size.saw();
    let expected_len = input.seat_count.div_ceil(8) as usize;
    if input.bitmap.len() != expected_len {
        size.anomaly(|| {
            format!("bitmap is {} bytes; {} seats need {expected_len}", input.bitmap.len(), input.seat_count)
        });
    }
    checks.push(size.done());
    let is_available = |seat: u32| available(input.bitmap, seat);

    // The run's own counts add up, and the server never answered 2xx with something else.
    let mut books = CheckBuilder::new("every 201 hold is accounted for (released + bought + expired + open)");
    for (seat, t) in log.seats.iter().enumerate() {
        if t.held == 0 && t.released + t.bought + t.expired + t.open == 0 {
            continue;
        }
        books.saw();
        if t.held != t.released + t.bought + t.expired + t.open {
            books.anomaly(|| {
                format!(
                    "{}: {} holds answered 201 but {} released + {} bought + {} expired + {} open",
                    name(seat as u32),
                    t.held,
                    t.released,
                    t.bought,
                    t.expired,
                    t.open
                )
            });
        }
    }
    for note in &log.contradictions {
        books.anomaly(|| note.clone());
    }
    for _ in log.contradictions.len() as u64..log.contradiction_count {
        books.anomaly(String::new);
    }
    checks.push(books.done());

    // No seat in two valid tickets; every sold seat unavailable.
    let mut single = CheckBuilder::new("no seat is in two valid tickets");
    let mut sold_unavailable = CheckBuilder::new("every seat in a valid ticket is unavailable in the bitmap");
    let mut sold: HashMap<u32, (&str, &str)> = HashMap::new();
    let mut valid_tickets = 0u64;
    for order in input.orders {
        for ticket in order.tickets.iter().filter(|t| t.valid) {
            valid_tickets += 1;
            single.saw();
            if let Some((other_ticket, other_order)) = sold.get(&ticket.seat) {
                single.anomaly(|| {
                    format!(
                        "DOUBLE SALE: {} is in ticket {other_ticket} (order {other_order}) and ticket {} (order {})",
                        name(ticket.seat),
                        ticket.ticket_id,
                        order.order_id
                    )
                });
            } else {
                sold.insert(ticket.seat, (&ticket.ticket_id, &order.order_id));
            }
            sold_unavailable.saw();
            match is_available(ticket.seat) {
                Some(false) => {}
                Some(true) => sold_unavailable.anomaly(|| {
                    format!(
                        "{} is sold (order {}) but available in the bitmap",
                        name(ticket.seat),
                        order.order_id
                    )
                }),
                None => sold_unavailable.anomaly(|| {
                    format!("{} of order {} is outside the bitmap", name(ticket.seat), order.order_id)
                }),
            }
        }
    }
    checks.push(single.done());
    checks.push(sold_unavailable.done());

    // Every checkout that answered 201 is in the buyer's orders with its seat.
    let mut found = CheckBuilder::new("every checkout that answered 201 is in its buyer's orders");
    let orders_by_id: HashMap<&str, &OrderFacts> =
        input.orders.iter().map(|o| (o.order_id.as_str(), o)).collect();
    for b in &log.bought {
        found.saw();
        match orders_by_id.get(b.order_id.as_str()) {
            None => found.anomaly(|| {
                format!(
                    "order {} (hold {}, {}) answered 201 but is not in its buyer's orders",
                    b.order_id,
                    b.hold_id,
                    name(b.seat)
                )
            }),
            Some(order) => {
                if order.user != b.user || !order.tickets.iter().any(|t| t.valid && t.seat == b.seat) {
                    found.anomaly(|| {
                        format!("order {} has no valid ticket for {} of its buyer", b.order_id, name(b.seat))
                    });
                }
            }
        }
    }
    checks.push(found.done());

    // Holds left open: still holding means unavailable; never two at once; other states
    // must be explained.
    let mut open = CheckBuilder::new("every open hold's seat is unavailable (or the hold expired)");
    let mut keepers: HashMap<u32, &str> = HashMap::new();
    let mut exclusive = CheckBuilder::new("no seat is held by two holds at once, or held and sold");
    let orders_by_hold: HashMap<&str, &OrderFacts> =
        input.orders.iter().map(|o| (o.hold_id.as_str(), o)).collect();
    let mut still_held = 0u64;
    let mut released_late: Vec<u32> = Vec::new();
    let mut unknown_seats: Vec<u32> = Vec::new();
    for (i, hold) in log.open.iter().enumerate() {
        open.saw();
        let status = input.statuses.get(i).cloned().unwrap_or(SeenStatus::Unknown("status not read".into()));
        match &status {
            SeenStatus::Held | SeenStatus::Confirming => {
                still_held += 1;
                match is_available(hold.seat) {
                    Some(false) => {}
                    _ => open.anomaly(|| {
                        format!(
                            "hold {} is {:?} but {} is available in the bitmap",
                            hold.hold_id,
                            status,
                            name(hold.seat)
                        )
                    }),
                }
                exclusive.saw();
                if let Some(other) = keepers.insert(hold.seat, &hold.hold_id) {
                    exclusive.anomaly(|| {
                        format!(
                            "{} is held by hold {other} and hold {} at once",
                            name(hold.seat),
                            hold.hold_id
                        )
                    });
                }
                if let Some((ticket, order)) = sold.get(&hold.seat) {
                    exclusive.anomaly(|| {
                        format!(
                            "{} is held by hold {} and sold in ticket {ticket} (order {order})",
                            name(hold.seat),
                            hold.hold_id
                        )
                    });
                }
            }
            SeenStatus::Expired => {}
            SeenStatus::Released => {
                // A release whose answer was lost, or a checkout whose answer was lost
                // (a timeout) that the server settled as unpaid: its reconciler voids the
                // payment and releases the hold, which fails closed. Either way the seat
                // must be on sale again and in no ticket of this hold (checked below).
                if hold.release_tried || hold.checkout_tried {
                    released_late.push(hold.seat);
                } else {
                    open.anomaly(|| {
                        format!("hold {} is released, but the run never released it", hold.hold_id)
                    });
                }
            }
            SeenStatus::Confirmed => {
                if !orders_by_hold
                    .get(hold.hold_id.as_str())
                    .is_some_and(|o| o.tickets.iter().any(|t| t.seat == hold.seat))
                {
                    open.anomaly(|| {
                        format!(
                            "hold {} is confirmed but no order of its owner has {}",
                            hold.hold_id,
                            name(hold.seat)
                        )
                    });
                }
            }
            SeenStatus::NotFound => {
                open.anomaly(|| format!("hold {} answered 201 but its owner now gets 404", hold.hold_id));
            }
            SeenStatus::Unknown(why) => {
                unknown_seats.push(hold.seat);
                open.anomaly(|| format!("could not verify hold {}: {why}", hold.hold_id));
            }
        }
    }
    checks.push(open.done());
    checks.push(exclusive.done());

    // Seats whose holds all ended, and that nobody bought, are available again.
    let mut back = CheckBuilder::new("seats whose holds all ended (released or expired) are available again");
    let mut open_by_seat: HashMap<u32, u32> = HashMap::new();
    for hold in &log.open {
        *open_by_seat.entry(hold.seat).or_default() += 1;
    }
    let late: HashMap<u32, u32> = released_late.iter().fold(HashMap::new(), |mut m, &s| {
        *m.entry(s).or_default() += 1;
        m
    });
    for (seat, t) in log.seats.iter().enumerate() {
        let seat = seat as u32;
        if t.held == 0
            || t.uncertain
            || t.bought > 0
            || sold.contains_key(&seat)
            || unknown_seats.contains(&seat)
        {
            continue;
        }
        // Open holds count as ended only when found released after a lost release or
        // checkout answer.
        let open_here = open_by_seat.get(&seat).copied().unwrap_or(0);
        if open_here > late.get(&seat).copied().unwrap_or(0) {
            continue;
        }
        back.saw();
        match is_available(seat) {
            Some(true) => {}
            Some(false) => back.anomaly(|| {
                format!(
                    "{} is unavailable, but all {} of the run's holds on it ended ({} released, {} expired)",
                    name(seat),
                    t.held,
                    t.released + late.get(&seat).copied().unwrap_or(0),
                    t.expired
                )
            }),
            None => back.anomaly(|| format!("{} is outside the bitmap", name(seat))),
        }
    }
    checks.push(back.done());

    let sum = |f: fn(&SeatTally) -> u32| log.seats.iter().map(|t| u64::from(f(t))).sum::<u64>();
    let available_seats = (0..input.seat_count).filter(|&s| is_available(s) == Some(true)).count() as u64;
    let facts = AuditFacts {
        holds_created: sum(|t| t.held),
        holds_released: sum(|t| t.released),
        holds_bought: sum(|t| t.bought),
        holds_expired: sum(|t| t.expired),
        holds_open: log.open.len() as u64,
        open_holds_still_held: still_held,
        uncertain_seats: log.seats.iter().filter(|t| t.uncertain).count() as u64,
        orders: input.orders.len() as u64,
        valid_tickets,
        available_seats,
        seat_count: input.seat_count,
    };
    let passed = checks.iter().all(|c| c.passed);
    AuditReport { passed, checks, facts }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEATS: u32 = 20;

    /// All seats available.
    fn full_bitmap() -> Vec<u8> {
        let mut bitmap = vec![0xFF; SEATS.div_ceil(8) as usize];
        // Bits past the last seat are 0, as the server sends them.
        if let Some(last) = bitmap.last_mut() {
            *last = 0x0F;
        }
        bitmap
    }

    fn take(bitmap: &mut [u8], seat: u32) {
        bitmap[(seat / 8) as usize] &= !(1 << (seat % 8));
    }

    fn order(id: &str, hold: &str, user: u32, seats: &[u32]) -> OrderFacts {
        OrderFacts {
            order_id: id.into(),
            hold_id: hold.into(),
            user,
            tickets: seats
                .iter()
                .map(|&s| TicketFacts { ticket_id: format!("tk_{id}_{s}"), seat: s, valid: true })
                .collect(),
        }
    }

    /// A consistent run: seat 1 held and released twice, seat 2 bought, seat 3 held and
    /// left open, seat 4 expired, seat 5 uncertain.
    fn clean() -> (AuditLog, Vec<u8>, Vec<OrderFacts>, Vec<SeenStatus>) {
        let mut log = AuditLog::for_seats(SEATS);
        let mut bitmap = full_bitmap();
        log.held(1);
        log.released(1);
        log.held(1);
        log.released(1);
        log.held(2);
        log.bought(Bought { order_id: "or_1".into(), hold_id: "ho_2".into(), seat: 2, user: 0 });
        take(&mut bitmap, 2);
        log.held(3);
        log.left_open(OpenHold {
            hold_id: "ho_3".into(),
            seat: 3,
            user: 1,
            release_tried: false,
            checkout_tried: false,
        });
        take(&mut bitmap, 3);
        log.held(4);
        log.expired(4);
        log.uncertain(5);
        take(&mut bitmap, 5);
        (log, bitmap, vec![order("or_1", "ho_2", 0, &[2])], vec![SeenStatus::Held])
    }

    fn run(log: &AuditLog, bitmap: &[u8], orders: &[OrderFacts], statuses: &[SeenStatus]) -> AuditReport {
        audit(&AuditInput { seat_count: SEATS, bitmap, log, orders, statuses, labels: &[] })
    }

    fn failed(report: &AuditReport) -> Vec<&'static str> {
        report.checks.iter().filter(|c| !c.passed).map(|c| c.name).collect()
    }

    #[test]
    fn a_consistent_run_passes() {
        let (log, bitmap, orders, statuses) = clean();
        let report = run(&log, &bitmap, &orders, &statuses);
        assert!(report.passed, "{report:#?}");
        assert_eq!(report.facts.holds_created, 5);
        assert_eq!(report.facts.holds_released, 2);
        assert_eq!(report.facts.holds_bought, 1);
        assert_eq!(report.facts.holds_open, 1);
        assert_eq!(report.facts.open_holds_still_held, 1);
        assert_eq!(report.facts.uncertain_seats, 1);
        assert_eq!(report.facts.valid_tickets, 1);
        assert_eq!(report.facts.available_seats, u64::from(SEATS) - 3);
        assert!(report.checks.iter().all(|c| c.checked > 0), "every check looked at something: {report:#?}");
    }

    #[test]
    fn a_planted_double_sale_is_caught() {
        let (log, bitmap, mut orders, statuses) = clean();
        orders.push(order("or_evil", "ho_evil", 1, &[2]));
        let report = run(&log, &bitmap, &orders, &statuses);
        assert!(!report.passed);
        assert_eq!(failed(&report), vec!["no seat is in two valid tickets"]);
        let check = &report.checks.iter().find(|c| !c.passed).expect("a failed check");
        assert!(check.examples[0].contains("DOUBLE SALE"), "{:?}", check.examples);
        assert!(check.examples[0].contains("or_evil"), "{:?}", check.examples);
    }

    #[test]
    fn a_refunded_ticket_is_not_a_double_sale() {
        let (log, bitmap, mut orders, statuses) = clean();
        let mut refunded = order("or_old", "ho_old", 1, &[2]);
        refunded.tickets[0].valid = false;
        orders.push(refunded);
        assert!(run(&log, &bitmap, &orders, &statuses).passed);
    }

    #[test]
    fn a_sold_seat_shown_available_is_caught() {
        let (log, mut bitmap, orders, statuses) = clean();
        bitmap[0] |= 1 << 2;
        let report = run(&log, &bitmap, &orders, &statuses);
        assert_eq!(failed(&report), vec!["every seat in a valid ticket is unavailable in the bitmap"]);
    }

    #[test]
    fn an_open_hold_shown_available_is_caught() {
        let (log, mut bitmap, orders, statuses) = clean();
        bitmap[0] |= 1 << 3;
        let report = run(&log, &bitmap, &orders, &statuses);
        assert_eq!(failed(&report), vec!["every open hold's seat is unavailable (or the hold expired)"]);
        // Expired by the time it was read: no anomaly.
        assert!(run(&log, &bitmap, &orders, &[SeenStatus::Expired]).passed);
    }

    #[test]
    fn a_released_seat_still_taken_is_caught() {
        let (log, mut bitmap, orders, statuses) = clean();
        take(&mut bitmap, 1);
        let report = run(&log, &bitmap, &orders, &statuses);
        assert_eq!(
            failed(&report),
            vec!["seats whose holds all ended (released or expired) are available again"]
        );
        take(&mut bitmap, 4);
        let report = run(&log, &bitmap, &orders, &statuses);
        assert_eq!(
            report.checks.iter().find(|c| !c.passed).map(|c| c.anomalies),
            Some(2),
            "the expired seat too"
        );
    }

    #[test]
    fn a_missing_order_and_bad_bookkeeping_are_caught() {
        let (mut log, bitmap, _, statuses) = clean();
        let report = run(&log, &bitmap, &[], &statuses);
        assert!(failed(&report).contains(&"every checkout that answered 201 is in its buyer's orders"));
        log.held(7);
        let report = run(&log, &bitmap, &[order("or_1", "ho_2", 0, &[2])], &statuses);
        assert_eq!(
            failed(&report),
            vec!["every 201 hold is accounted for (released + bought + expired + open)"]
        );
        let (mut log, bitmap, orders, statuses) = clean();
        log.contradiction("hold ho_9 answered 201 for seat 9; the request asked for seat 8".into());
        assert!(!run(&log, &bitmap, &orders, &statuses).passed);
    }

    #[test]
    fn two_holds_at_once_and_unexplained_states_are_caught() {
        let (mut log, mut bitmap, orders, _) = clean();
        log.held(3);
        log.left_open(OpenHold {
            hold_id: "ho_3b".into(),
            seat: 3,
            user: 2,
            release_tried: false,
            checkout_tried: false,
        });
        take(&mut bitmap, 3);
        let report = run(&log, &bitmap, &orders, &[SeenStatus::Held, SeenStatus::Held]);
        assert_eq!(failed(&report), vec!["no seat is held by two holds at once, or held and sold"]);
        let report = run(&log, &bitmap, &orders, &[SeenStatus::Held, SeenStatus::Released]);
        assert_eq!(failed(&report), vec!["every open hold's seat is unavailable (or the hold expired)"]);
        let report = run(&log, &bitmap, &orders, &[SeenStatus::Held, SeenStatus::NotFound]);
        assert!(!report.passed);
        let report = run(&log, &bitmap, &orders, &[SeenStatus::Held, SeenStatus::Unknown("timeout".into())]);
        assert!(!report.passed, "an open hold that cannot be verified fails the audit");
    }

    #[test]
    fn a_lost_release_answer_is_resolved_by_the_hold_status() {
        let mut log = AuditLog::for_seats(SEATS);
        log.held(6);
        log.left_open(OpenHold {
            hold_id: "ho_6".into(),
            seat: 6,
            user: 0,
            release_tried: true,
            checkout_tried: false,
        });
        let bitmap = full_bitmap();
        assert!(run(&log, &bitmap, &[], &[SeenStatus::Released]).passed);
        let mut taken = bitmap.clone();
        take(&mut taken, 6);
        assert!(!run(&log, &taken, &[], &[SeenStatus::Released]).passed, "released yet unavailable");
    }

    #[test]
    fn a_checkout_without_an_answer_may_end_released_by_the_server() {
        let mut log = AuditLog::for_seats(SEATS);
        log.held(6);
        log.left_open(OpenHold {
            hold_id: "ho_6".into(),
            seat: 6,
            user: 0,
            release_tried: false,
            checkout_tried: true,
        });
        let bitmap = full_bitmap();
        assert!(run(&log, &bitmap, &[], &[SeenStatus::Released]).passed);
        let mut taken = bitmap.clone();
        take(&mut taken, 6);
        assert!(!run(&log, &taken, &[], &[SeenStatus::Released]).passed, "released yet unavailable");
    }

    #[test]
    fn a_short_bitmap_is_caught() {
        let (log, bitmap, orders, statuses) = clean();
        let report = run(&log, &bitmap[..1], &orders, &statuses);
        assert!(failed(&report).contains(&"the bitmap has one bit per seat"));
    }

    #[test]
    fn logs_merge() {
        let (a, ..) = clean();
        let mut merged = AuditLog::for_seats(SEATS);
        merged.merge(&a);
        merged.merge(&a);
        assert_eq!(merged.seats[1].held, 4);
        assert_eq!(merged.open.len(), 2);
        assert_eq!(merged.bought.len(), 2);
        assert!(merged.seats[5].uncertain);
    }
}
