//! Waitlist matching with 100,000 waiting entries when a block of 100 seats frees up
//! (docs/waitlist.md, docs/benchmarks.md):
//!
//! ```sh
//! cargo run --release -p boxoffice-server --example waitlist_match -- [entries]
//! ```
//!
//! A 20,000-seat venue (10 sections of 40 rows of 50 seats, two price tiers), sold out; a
//! block of 100 seats (two rows of 50 in one section) is freed into the event's pool. The
//! entries ask for 1-8 seats, half of them in one or two named sections, a third with a
//! price ceiling, most adjacent. Measured, each as the median and worst of several runs:
//!
//! - `plan`: the walk of the rule over the in-memory index (which entries get which seats);
//! - `plan + offers`: the same and every offer made in the embedded engine (one atomic
//!   pool -> hold move per offer), i.e. the matcher's step without the store's writes;
//! - `worst case`: no entry but the last fits (every entry asks for a section nothing was
//!   freed in), so the walk visits all of them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_core::{EventId, SeatMap, SectionSpec, UserId};
use boxoffice_engine::{HoldRequest, Inventory, MemoryInventory, OfferRequest, Selection};
use boxoffice_server::waitlist::{Criteria, Line, plan};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENT: EventId = EventId(1);
const SECTIONS: u16 = 10;
const ROWS: u32 = 40;
const PER_ROW: u32 = 50;
const RUNS: usize = 15;

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn venue() -> Arc<SeatMap> {
    let specs: Vec<SectionSpec> = (0..SECTIONS)
        .map(|s| SectionSpec {
            name: format!("S{s}"),
            rows: ROWS,
            seats_per_row: PER_ROW,
            tier: Some(if s < 2 { "premium".into() } else { "standard".into() }),
        })
        .collect();
    Arc::new(SeatMap::from_sections(vec!["premium".into(), "standard".into()], &specs).expect("layout"))
}

fn price(map: &SeatMap, seat: u32) -> i64 {
    if map.seat(seat).tier == 0 { 9_000 } else { 4_000 }
}

/// `n` entries in join order; with `worst`, all but the last ask for section 9 (nothing
/// freed there) and the last fits.
fn line(n: usize, worst: bool) -> Line {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut line = Line::default();
    for i in 0..n {
        let group_size = 1 + rng.below(8) as u32;
        let criteria = if worst && i + 1 < n {
            Criteria { group_size, sections: vec![9], max_price: None, adjacent: true }
        } else if worst {
            Criteria { group_size: 4, sections: vec![], max_price: None, adjacent: true }
        } else {
            let sections = match rng.below(4) {
                0 => vec![rng.below(u64::from(SECTIONS)) as u16],
                1 => {
                    let mut two =
                        vec![rng.below(u64::from(SECTIONS)) as u16, rng.below(u64::from(SECTIONS)) as u16];
                    two.sort_unstable();
                    two.dedup();
                    two
                }
                _ => vec![],
            };
            let max_price = (rng.below(3) == 0).then(|| [3_000, 5_000, 10_000][rng.below(3) as usize]);
            Criteria { group_size, sections, max_price, adjacent: rng.below(5) != 0 }
        };
        line.push(
            i as u64 + 1,
            format!("wl_{i:026x}"),
            UserId::parse(&format!("fan{i}")).unwrap(),
            None,
            criteria,
        );
    }
    line
}

/// The freed block: rows 10 and 11 of section 3 (100 seats).
fn block(map: &SeatMap) -> Vec<u32> {
    let first = 3 * ROWS * PER_ROW + 10 * PER_ROW;
    let block: Vec<u32> = (first..first + 2 * PER_ROW).collect();
    assert!(block.iter().all(|&s| map.seat(s).section == 3));
    block
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "median {:.2} ms, worst {:.2} ms ({} runs)",
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

/// A sold-out event in the embedded engine with `seats` in its pool.
async fn engine_with_pool(map: &Arc<SeatMap>, seats: &[u32]) -> MemoryInventory {
    let inv = MemoryInventory::in_memory();
    inv.load_event(EVENT, map.clone(), Vec::new()).await.unwrap();
    let hold = |user: &str, seats: Vec<u32>| HoldRequest {
        event: EVENT,
        user: UserId::parse(user).unwrap(),
        selection: Selection::Seats(seats),
        ttl_ms: 3_600_000,
        max_seats_per_user: u32::MAX,
        orphan_rule: false,
        blocked: None,
    };
    let freed = inv.hold(hold("holder", seats.to_vec())).await.unwrap();
    let rest: Vec<u32> = (0..map.len() as u32).filter(|s| !seats.contains(s)).collect();
    for chunk in rest.chunks(1000) {
        inv.hold(hold("crowd", chunk.to_vec())).await.unwrap();
    }
    inv.set_waitlist(EVENT, true).await.unwrap();
    inv.release(freed.id).await.unwrap();
    assert_eq!(inv.pool(EVENT).await.unwrap().seats, seats);
    inv
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let entries: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let map = venue();
    let freed = block(&map);
    let price = |s: u32| price(&map, s);
    let none = HashSet::new();
    println!(
        "waitlist matching: {entries} waiting entries, {} seats freed, {}-seat venue",
        freed.len(),
        map.len()
    );

    let mixed = line(entries, false);
    let (offers, left) = plan(&mixed, &map, &price, &freed, &none);
    let offered: usize = offers.iter().map(|(_, s)| s.len()).sum();
    println!("  mixed entries: {} offers ({offered} seats), {} seats back on sale", offers.len(), left.len());
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        std::hint::black_box(plan(&mixed, &map, &price, &freed, &none));
        samples.push(started.elapsed());
    }
    println!("  plan:          {}", stats(samples));

    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let inv = engine_with_pool(&map, &freed).await;
        let started = Instant::now();
        let (offers, left) = plan(&mixed, &map, &price, &freed, &none);
        for (seq, seats) in &offers {
            let user = mixed.waiting[seq].user.clone();
            let request = OfferRequest {
                event: EVENT,
                user,
                seats: seats.clone(),
                ttl_ms: 900_000,
                max_seats_per_user: 8,
            };
            inv.offer(request).await.expect("offer");
        }
        inv.release_pool(EVENT, &left).await.unwrap();
        samples.push(started.elapsed());
        assert!(inv.pool(EVENT).await.unwrap().seats.is_empty());
        inv.check_invariants(EVENT).expect("engine invariants");
    }
    println!("  plan + offers: {}", stats(samples));

    let worst = line(entries, true);
    let (offers, _) = plan(&worst, &map, &price, &freed, &none);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].0, entries as u64, "only the last entry fits");
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        std::hint::black_box(plan(&worst, &map, &price, &freed, &none));
        samples.push(started.elapsed());
    }
    println!("  worst case (only the last entry fits): {}", stats(samples));
}
