//! Throughput of the embedded inventory's hot path, journal off.
//!
//! A 60,000-seat venue (60 sections x 20 rows x 50 seats). Each element is one
//! single-seat hold of a random seat followed by its release (a "pair"), so criterion's
//! `elem/s` is pairs per second:
//! - `hold_release/one_thread`: one thread, one current-thread runtime;
//! - `hold_release/two_threads`: two threads, each with its own current-thread runtime,
//!   sharing one `Arc<MemoryInventory>`; elapsed time is wall time for both, so `elem/s`
//!   is the combined rate;
//! - `best_available_4/*`: a best-available hold of 4 seats plus its release, on an empty
//!   venue and on one whose front half (rows 1-10 of every section) is taken.
//! - `orphan_rule/*`: the same work with the orphan-seat rule off and on: single-seat
//!   holds (+ release) of random seats other than the second and the second-to-last of a
//!   row (which the rule refuses on an empty row), so that every hold succeeds either way
//!   and the difference is the rule's check; and best available of 4 on the empty venue.
//!
//! Run: `cargo bench -p boxoffice-engine --bench engine -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use boxoffice_core::{EventId, SeatMap, SectionSpec, UserId};
use boxoffice_engine::{HoldRequest, Inventory, InventoryError, MemoryInventory, Selection};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const EVENT: EventId = EventId(1);
const SECTIONS: u32 = 60;
const ROWS: u32 = 20;
const SEATS_PER_ROW: u32 = 50;
const SEATS: u32 = SECTIONS * ROWS * SEATS_PER_ROW;
const USERS: usize = 10_000;
const TTL_MS: u64 = 600_000;
/// Large enough that the per-user limit never interferes.
const NO_LIMIT: u32 = u32::MAX / 2;

fn venue() -> Arc<SeatMap> {
    let sections: Vec<SectionSpec> = (0..SECTIONS)
        .map(|s| SectionSpec { name: format!("S{s}"), rows: ROWS, seats_per_row: SEATS_PER_ROW, tier: None })
        .collect();
    let map = SeatMap::from_sections(SeatMap::default_tiers(), &sections).expect("valid venue");
    assert_eq!(map.len(), SEATS as usize);
    Arc::new(map)
}

fn users() -> Arc<Vec<UserId>> {
    Arc::new((0..USERS).map(|u| UserId::parse(&format!("user{u}")).unwrap()).collect())
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

/// An in-memory inventory with the venue's event loaded.
fn inventory(rt: &tokio::runtime::Runtime) -> Arc<MemoryInventory> {
    let inv = Arc::new(MemoryInventory::in_memory());
    rt.block_on(inv.load_event(EVENT, venue(), Vec::new())).expect("event loads");
    inv
}

/// xorshift64*: fast, deterministic, and no extra dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) * u64::from(n)) >> 32) as u32
    }
}

static SEED: AtomicU64 = AtomicU64::new(1);

fn next_seed() -> u64 {
    SEED.fetch_add(1, Ordering::Relaxed)
}

/// `n` single-seat hold + release pairs on random seats.
async fn pairs(inv: &MemoryInventory, users: &[UserId], rng: &mut Rng, n: u64, first_user: usize) {
    for k in 0..n as usize {
        let request = HoldRequest {
            event: EVENT,
            user: users[(first_user + k) % users.len()].clone(),
            selection: Selection::Seats(vec![rng.below(SEATS)]),
            ttl_ms: TTL_MS,
            max_seats_per_user: NO_LIMIT,
            orphan_rule: false,
            blocked: None,
        };
        match inv.hold(request).await {
            Ok(view) => {
                black_box(inv.release(view.id).await.expect("own hold is live"));
            }
            // Another thread holds that seat right now: a lost race, counted as done.
            Err(InventoryError::SeatsUnavailable(_)) => {}
            Err(e) => panic!("hold failed: {e}"),
        }
    }
}

fn hold_release(c: &mut Criterion) {
    let mut group = c.benchmark_group("hold_release");
    let users = users();

    let rt = current_thread();
    let inv = inventory(&rt);
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_thread", |b| {
        b.iter_custom(|iters| {
            let mut rng = Rng::new(next_seed());
            let start = Instant::now();
            rt.block_on(pairs(&inv, &users, &mut rng, iters, 0));
            start.elapsed()
        });
    });

    let inv = inventory(&rt);
    group.throughput(Throughput::Elements(2));
    group.bench_function("two_threads", |b| {
        b.iter_custom(|iters| {
            let ready = Arc::new(Barrier::new(3));
            let threads: Vec<_> = (0..2)
                .map(|t| {
                    let (inv, users, ready) = (inv.clone(), users.clone(), ready.clone());
                    std::thread::spawn(move || {
                        let rt = current_thread();
                        let mut rng = Rng::new(next_seed());
                        ready.wait();
                        rt.block_on(pairs(&inv, &users, &mut rng, iters, t * USERS / 2));
                    })
                })
                .collect();
            ready.wait();
            let start = Instant::now();
            for thread in threads {
                thread.join().expect("bench thread");
            }
            start.elapsed()
        });
    });
    group.finish();
}

fn best_available(c: &mut Criterion) {
    let mut group = c.benchmark_group("best_available_4");
    group.throughput(Throughput::Elements(1));
    let users = users();
    let rt = current_thread();

    let run = |inv: Arc<MemoryInventory>| {
        let users = users.clone();
        let rt = &rt;
        move |iters: u64| -> Duration {
            let start = Instant::now();
            rt.block_on(async {
                for k in 0..iters as usize {
                    let request = HoldRequest {
                        event: EVENT,
                        user: users[k % users.len()].clone(),
                        selection: Selection::BestAvailable { count: 4, section: None },
                        ttl_ms: TTL_MS,
                        max_seats_per_user: NO_LIMIT,
                        orphan_rule: false,
                        blocked: None,
                    };
                    let view = inv.hold(request).await.expect("4 seats are free");
                    black_box(inv.release(view.id).await.expect("own hold is live"));
                }
            });
            start.elapsed()
        }
    };

    let empty = inventory(&rt);
    group.bench_function("empty_venue", |b| b.iter_custom(run(empty.clone())));

    // Rows 1-10 of every section taken: the picker skips 600 full rows first.
    let front_sold = inventory(&rt);
    let map = venue();
    rt.block_on(async {
        for (r, row) in map.rows().iter().filter(|row| row.row <= ROWS / 2).enumerate() {
            let request = HoldRequest {
                event: EVENT,
                user: UserId::parse(&format!("front{r}")).unwrap(),
                selection: Selection::Seats(row.seats.clone()),
                ttl_ms: TTL_MS * 1_000,
                max_seats_per_user: NO_LIMIT,
                orphan_rule: false,
                blocked: None,
            };
            front_sold.hold(request).await.expect("front rows are free");
        }
    });
    group.bench_function("front_half_taken", |b| b.iter_custom(run(front_sold.clone())));
    group.finish();
}

/// Hold + release pairs of random single seats that the rule lets through on an empty
/// venue, with the orphan-seat rule `on` or off; every hold must succeed.
async fn rule_pairs(inv: &MemoryInventory, users: &[UserId], rng: &mut Rng, n: u64, on: bool) {
    for k in 0..n as usize {
        let mut seat = rng.below(SEATS);
        // Positions 1 and 48 of a row (seats 2 and 49) would strand the row's end seat.
        if matches!(seat % SEATS_PER_ROW, 1 | 48) {
            seat += 1;
        }
        let request = HoldRequest {
            event: EVENT,
            user: users[k % users.len()].clone(),
            selection: Selection::Seats(vec![seat]),
            ttl_ms: TTL_MS,
            max_seats_per_user: NO_LIMIT,
            orphan_rule: on,
            blocked: None,
        };
        let view = inv.hold(request).await.expect("a lone hold on an empty row strands nothing");
        black_box(inv.release(view.id).await.expect("own hold is live"));
    }
}

fn orphan_rule(c: &mut Criterion) {
    let mut group = c.benchmark_group("orphan_rule");
    group.throughput(Throughput::Elements(1));
    let users = users();
    let rt = current_thread();
    for on in [false, true] {
        let inv = inventory(&rt);
        let name = if on { "single_seat_on" } else { "single_seat_off" };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut rng = Rng::new(next_seed());
                let start = Instant::now();
                rt.block_on(rule_pairs(&inv, &users, &mut rng, iters, on));
                start.elapsed()
            });
        });
    }
    for on in [false, true] {
        let inv = inventory(&rt);
        let name = if on { "best_available_4_on" } else { "best_available_4_off" };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(async {
                    for k in 0..iters as usize {
                        let request = HoldRequest {
                            event: EVENT,
                            user: users[k % users.len()].clone(),
                            selection: Selection::BestAvailable { count: 4, section: None },
                            ttl_ms: TTL_MS,
                            max_seats_per_user: NO_LIMIT,
                            orphan_rule: on,
                            blocked: None,
                        };
                        let view = inv.hold(request).await.expect("4 seats are free");
                        black_box(inv.release(view.id).await.expect("own hold is live"));
                    }
                });
                start.elapsed()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, hold_release, best_available, orphan_rule);
criterion_main!(benches);
