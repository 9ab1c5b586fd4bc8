//! Demo data for `--demo`: five venues in five cities (one a 60,000-seat stadium), ten
//! performers and 24 events over several categories and dates, one of them the stadium
//! show on sale now. Seeded once per data dir, however often the server starts.

use std::f32::consts::TAU;
use std::sync::Arc;

use boxoffice_core::{Currency, Money, SeatMap, SeatSpec, SectionSpec};
use boxoffice_store::{NewEvent, NewVenue};

use crate::{AppState, StartError};

const SEEDED_KEY: &str = "demo_seeded_at";
const DAY_MS: u64 = 24 * 3600 * 1000;

/// The stadium: 24 sections (`101`..`124`) in an oval ring around the pitch, 25 rows of
/// 100 seats each; rows 1-8 are premium, 9-17 standard, 18-25 economy.
pub fn stadium() -> SeatMap {
    const SECTIONS: u32 = 24;
    const ROWS: u32 = 25;
    const SEATS_PER_ROW: u32 = 100;
    const INNER_RADIUS: f32 = 400.0;
    const AISLE_FRACTION: f32 = 0.04;
    let mut seats = Vec::with_capacity((SECTIONS * ROWS * SEATS_PER_ROW) as usize);
    let span = TAU / SECTIONS as f32;
    for section in 0..SECTIONS {
        let start = section as f32 * span + span * AISLE_FRACTION / 2.0;
        let usable = span * (1.0 - AISLE_FRACTION);
        for row in 1..=ROWS {
            let radius = INNER_RADIUS + row as f32 * 1.2;
            for number in 1..=SEATS_PER_ROW {
                let angle = start + usable * (number as f32 - 0.5) / SEATS_PER_ROW as f32;
                let tier = match row {
                    1..=8 => "premium",
                    9..=17 => "standard",
                    _ => "economy",
                };
                seats.push(SeatSpec {
                    section: format!("{}", 101 + section),
                    row,
                    number,
                    x: (radius * angle.cos() * 1.35 * 10.0).round() / 10.0,
                    y: (radius * angle.sin() * 10.0).round() / 10.0,
                    tier: Some(tier.into()),
                });
            }
        }
    }
    SeatMap::from_seats(vec!["premium".into(), "standard".into(), "economy".into()], &seats)
        .expect("the demo stadium is a valid layout")
}

fn sections(specs: &[(&str, u32, u32, &str)]) -> Vec<SectionSpec> {
    specs
        .iter()
        .map(|&(name, rows, seats_per_row, tier)| SectionSpec {
            name: name.into(),
            rows,
            seats_per_row,
            tier: Some(tier.into()),
        })
        .collect()
}

fn layout(tiers: &[&str], specs: &[(&str, u32, u32, &str)]) -> SeatMap {
    SeatMap::from_sections(tiers.iter().map(|t| (*t).to_owned()).collect(), &sections(specs))
        .expect("demo layouts are valid")
}

struct DemoVenue {
    name: &'static str,
    city: &'static str,
    lat: f64,
    lon: f64,
    address: &'static str,
    map: SeatMap,
}

fn venues() -> Vec<DemoVenue> {
    let three = ["premium", "standard", "economy"];
    vec![
        DemoVenue {
            name: "Riverside Stadium",
            city: "London",
            lat: 51.5550,
            lon: -0.1084,
            address: "75 Drayton Park, London N5",
            map: stadium(),
        },
        DemoVenue {
            name: "Harbor Arena",
            city: "New York",
            lat: 40.7505,
            lon: -73.9934,
            address: "4 Pennsylvania Plaza, New York, NY",
            map: layout(
                &three,
                &[
                    ("Floor", 20, 40, "premium"),
                    ("L1", 20, 50, "standard"),
                    ("R1", 20, 50, "standard"),
                    ("L2", 25, 50, "economy"),
                    ("R2", 25, 50, "economy"),
                    ("Upper", 30, 80, "economy"),
                ],
            ),
        },
        DemoVenue {
            name: "Grand Theater",
            city: "Chicago",
            lat: 41.8847,
            lon: -87.6278,
            address: "24 W Randolph St, Chicago, IL",
            map: layout(
                &three,
                &[
                    ("Orchestra", 20, 30, "premium"),
                    ("Mezzanine", 10, 30, "standard"),
                    ("Balcony", 12, 30, "economy"),
                ],
            ),
        },
        DemoVenue {
            name: "Spree Hall",
            city: "Berlin",
            lat: 52.5065,
            lon: 13.4432,
            address: "Mercedes-Platz 1, Berlin",
            map: layout(
                &three,
                &[
                    ("Parkett", 15, 40, "premium"),
                    ("Rang1", 12, 45, "standard"),
                    ("Rang2", 14, 45, "economy"),
                ],
            ),
        },
        DemoVenue {
            name: "Sunset Amphitheater",
            city: "Austin",
            lat: 30.2672,
            lon: -97.7431,
            address: "310 Willie Nelson Blvd, Austin, TX",
            map: layout(
                &["front", "lawn"],
                &[("Pit", 10, 40, "front"), ("Terrace", 20, 60, "front"), ("Lawn", 30, 80, "lawn")],
            ),
        },
    ]
}

const PERFORMERS: &[(&str, &str)] = &[
    ("Aurora Skies", "pop"),
    ("The Midnight Lanterns", "rock"),
    ("Dua Valenta", "pop"),
    ("London Lions FC", "football"),
    ("Harbor Hawks", "basketball"),
    ("The Chicago Players", "drama"),
    ("Mara Quinn", "comedy"),
    ("Orquesta del Sol", "latin"),
    ("Kid Kosmos", "family"),
    ("Neon Festival Collective", "electronic"),
];

/// `(name, venue index, performer indexes, category, days from now to start, days from
/// now to onsale (negative: already on sale), base price in cents)`.
type EventSpec = (&'static str, usize, &'static [usize], &'static str, u64, i64, i64);

const EVENTS: &[EventSpec] = &[
    ("Aurora Skies: The Stadium Tour", 0, &[0], "concert", 45, -1, 9_500),
    ("London Lions FC vs Northern Rovers", 0, &[3], "sports", 20, 3, 6_000),
    ("The Midnight Lanterns: Live in London", 0, &[1], "concert", 90, 10, 8_500),
    ("Neon Summer Festival", 0, &[9, 2], "festival", 120, 14, 12_000),
    ("Harbor Hawks vs Boston Blaze", 1, &[4], "sports", 5, -10, 4_500),
    ("Dua Valenta: Future Nostalgia Nights", 1, &[2], "concert", 30, -5, 11_000),
    ("Mara Quinn: Unfiltered", 1, &[6], "comedy", 12, -20, 5_500),
    ("Kid Kosmos on Ice", 1, &[8], "family", 40, 2, 3_500),
    ("Hamlet", 2, &[5], "theater", 8, -30, 7_000),
    ("A Midsummer Night's Dream", 2, &[5], "theater", 35, -2, 6_500),
    ("Mara Quinn: Late Show", 2, &[6], "comedy", 15, -7, 4_000),
    ("Orquesta del Sol: Noche Latina", 2, &[7], "concert", 50, 5, 5_000),
    ("The Midnight Lanterns: Berlin", 3, &[1], "concert", 25, -3, 7_500),
    ("Neon Nights Berlin", 3, &[9], "festival", 60, 7, 6_000),
    ("Kid Kosmos: Space Party", 3, &[8], "family", 18, -4, 2_500),
    ("Dua Valenta: Berlin", 3, &[2], "concert", 75, 20, 9_000),
    ("Orquesta del Sol: Austin", 4, &[7], "concert", 22, -6, 4_500),
    ("Aurora Skies: Acoustic", 4, &[0], "concert", 65, 9, 6_500),
    ("Mara Quinn: Texas Tour", 4, &[6], "comedy", 28, -1, 3_500),
    ("Austin Sunset Fest", 4, &[9, 7], "festival", 100, 15, 8_000),
    ("Harbor Hawks vs Chicago Storm", 1, &[4], "sports", 26, -8, 5_000),
    ("Hamlet: Final Week", 2, &[5], "theater", 70, 12, 7_500),
    ("London Lions FC vs City Athletic", 0, &[3], "sports", 55, 8, 6_500),
    ("The Midnight Lanterns: Austin", 4, &[1], "concert", 85, 18, 5_500),
];

/// Seeds the demo catalog once. Returns without change if it was seeded before.
pub async fn seed(state: &AppState) -> Result<(), StartError> {
    let store = state.store.as_ref();
    if store.meta_get(SEEDED_KEY).await?.is_some() {
        return Ok(());
    }
    let now = boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock);
    // Whole hours, so that the seeded times read well.
    let base = now - now % (3600 * 1000);
    let mut venue_ids = Vec::new();
    let mut tiers = Vec::new();
    for v in venues() {
        tiers.push(v.map.tiers().to_vec());
        let venue = store
            .create_venue(NewVenue {
                name: v.name.into(),
                city: v.city.into(),
                lat: v.lat,
                lon: v.lon,
                address: Some(v.address.into()),
                map: Arc::new(v.map),
            })
            .await?;
        venue_ids.push(venue.id);
    }
    let mut performer_ids = Vec::new();
    for (name, genre) in PERFORMERS {
        performer_ids.push(store.create_performer(name, Some(genre)).await?.id);
    }
    for &(name, venue, performers, category, start_days, onsale_days, price) in EVENTS {
        let starts_at = base + start_days * DAY_MS + 19 * 3600 * 1000;
        let onsale_at = if onsale_days < 0 {
            base - onsale_days.unsigned_abs() * DAY_MS
        } else {
            base + onsale_days as u64 * DAY_MS
        };
        let prices = tiers[venue]
            .iter()
            .enumerate()
            .map(|(rank, tier)| (tier.clone(), Money::new(price / (rank as i64 + 1), Currency::USD)))
            .collect();
        let event = store
            .create_event(NewEvent {
                name: name.into(),
                venue_id: venue_ids[venue],
                performer_ids: performers.iter().map(|&p| performer_ids[p]).collect(),
                category: category.into(),
                starts_at,
                onsale_at,
                prices,
                description: Some(format!("{name}. Named seats, best available, live seat map.")),
            })
            .await?;
        crate::load_event(state, event.id).await?;
    }
    store.meta_set_if_absent(SEEDED_KEY, &now.to_string()).await?;
    tracing::info!(venues = venue_ids.len(), events = EVENTS.len(), "demo data seeded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stadium_has_sixty_thousand_seats_in_rows_numbered_from_one() {
        let map = stadium();
        assert_eq!(map.len(), 60_000);
        assert_eq!(map.tiers().len(), 3);
        assert!(map.rows().iter().all(|r| r.seats.len() == 100));
        assert_eq!(map.resolve("101-1-1"), Some(0));
        assert!(map.resolve("124-25-100").is_some());
    }

    #[test]
    fn every_demo_venue_is_valid_and_every_event_names_one() {
        let venues = venues();
        assert!(venues.len() >= 3);
        let cities: std::collections::HashSet<_> = venues.iter().map(|v| v.city).collect();
        assert!(cities.len() >= 3);
        assert!(EVENTS.len() >= 20);
        assert!(EVENTS.iter().all(|e| e.1 < venues.len() && e.2.iter().all(|&p| p < PERFORMERS.len())));
        assert!(EVENTS.iter().any(|e| e.1 == 0 && e.5 < 0), "one stadium event is on sale now");
    }
}
