//! Demo data for `--demo`: five venues in five cities (one a 60,000-seat stadium), ten
//! performers and 24 events over several categories and dates, one of them the stadium
//! show on sale now (always `ev_1`); then a generated catalog so that search is worth
//! trying: [`GENERATED_EVENTS`] events in [`CITIES`] (56 cities) and ten categories, at
//! small venues (a few hundred seats: each event copies its venue's seat map), drawn from
//! a fixed seed so that every demo has the same events. Seeded once per data dir, however
//! often the server starts.

use std::f32::consts::TAU;
use std::sync::Arc;

use boxoffice_core::{Currency, Money, SeatMap, SeatSpec, SectionSpec};
use boxoffice_store::{NewEvent, NewVenue};

use crate::{AppState, StartError};

const SEEDED_KEY: &str = "demo_seeded_at";
/// Claimed (with the time) by the one node that seeds.
const SEEDING_KEY: &str = "demo_seeding_since";
/// How long after a claim the other nodes wait for its seeding to finish.
pub const SEEDING_PATIENCE_MS: u64 = 10 * 60 * 1000;
const DAY_MS: u64 = 24 * 3600 * 1000;
const HOUR_MS: u64 = 3600 * 1000;
/// Events of the generated catalog, besides the 24 hand-written ones.
pub const GENERATED_EVENTS: usize = 2_000;
/// Seed of the generated catalog: the same demo everywhere.
const GENERATOR_SEED: u64 = 0xB0C5_0FF1_CE00_2026;

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
///
/// Nodes of a distributed deployment started together with `--demo` share one store: the
/// first to claim [`SEEDING_KEY`] seeds, the others wait (at most [`SEEDING_PATIENCE_MS`]
/// after the claim) until it is done, so that each says ready with the demo in place.
pub async fn seed(state: &AppState) -> Result<(), StartError> {
    let store = state.store.as_ref();
    if store.meta_get(SEEDED_KEY).await?.is_some() {
        return Ok(());
    }
    let now = boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock);
    // Embedded, the data dir's lock excludes a second seeder: a claim without the seeded
    // mark is from a run that stopped while seeding, and this run seeds.
    if !store.meta_set_if_absent(SEEDING_KEY, &now.to_string()).await? && state.config.distributed() {
        return wait_for_other_seeder(state).await;
    }
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
    let generated = seed_generated(state, base).await?;
    store.meta_set_if_absent(SEEDED_KEY, &now.to_string()).await?;
    tracing::info!(
        venues = venue_ids.len() + generated.venues,
        events = EVENTS.len() + generated.events,
        "demo data seeded"
    );
    Ok(())
}

/// Waits until the node that claimed the seeding has finished it, then loads its events
/// as start-up loads every event.
async fn wait_for_other_seeder(state: &AppState) -> Result<(), StartError> {
    let store = state.store.as_ref();
    let claimed_at: u64 = store.meta_get(SEEDING_KEY).await?.and_then(|v| v.parse().ok()).unwrap_or(0);
    let deadline = claimed_at.saturating_add(SEEDING_PATIENCE_MS);
    tracing::info!("another node is seeding the demo; waiting for it");
    loop {
        if store.meta_get(SEEDED_KEY).await?.is_some() {
            for id in store.all_event_ids().await? {
                crate::load_event(state, id).await?;
            }
            return Ok(());
        }
        if boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock) >= deadline {
            tracing::warn!(
                claimed_at,
                "the node that began seeding the demo did not finish it; the demo stays incomplete \
                 (start on a fresh database to seed it again)"
            );
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

// ---- the generated catalog ----

/// `(city, latitude, longitude)` of the generated venues' cities.
pub const CITIES: &[(&str, f64, f64)] = &[
    ("London", 51.5074, -0.1278),
    ("New York", 40.7128, -74.0060),
    ("Chicago", 41.8781, -87.6298),
    ("Berlin", 52.5200, 13.4050),
    ("Austin", 30.2672, -97.7431),
    ("Paris", 48.8566, 2.3522),
    ("Madrid", 40.4168, -3.7038),
    ("Barcelona", 41.3874, 2.1686),
    ("Lisbon", 38.7223, -9.1393),
    ("Rome", 41.9028, 12.4964),
    ("Milan", 45.4642, 9.1900),
    ("Vienna", 48.2082, 16.3738),
    ("Prague", 50.0755, 14.4378),
    ("Warsaw", 52.2297, 21.0122),
    ("Amsterdam", 52.3676, 4.9041),
    ("Brussels", 50.8503, 4.3517),
    ("Copenhagen", 55.6761, 12.5683),
    ("Stockholm", 59.3293, 18.0686),
    ("Oslo", 59.9139, 10.7522),
    ("Helsinki", 60.1699, 24.9384),
    ("Dublin", 53.3498, -6.2603),
    ("Edinburgh", 55.9533, -3.1883),
    ("Manchester", 53.4808, -2.2426),
    ("Munich", 48.1351, 11.5820),
    ("Hamburg", 53.5511, 9.9937),
    ("Köln", 50.9375, 6.9603),
    ("Zurich", 47.3769, 8.5417),
    ("Budapest", 47.4979, 19.0402),
    ("Athens", 37.9838, 23.7275),
    ("Istanbul", 41.0082, 28.9784),
    ("Los Angeles", 34.0522, -118.2437),
    ("San Francisco", 37.7749, -122.4194),
    ("Seattle", 47.6062, -122.3321),
    ("Portland", 45.5152, -122.6784),
    ("Denver", 39.7392, -104.9903),
    ("Dallas", 32.7767, -96.7970),
    ("Houston", 29.7604, -95.3698),
    ("Nashville", 36.1627, -86.7816),
    ("New Orleans", 29.9511, -90.0715),
    ("Atlanta", 33.7490, -84.3880),
    ("Miami", 25.7617, -80.1918),
    ("Boston", 42.3601, -71.0589),
    ("Philadelphia", 39.9526, -75.1652),
    ("Washington", 38.9072, -77.0369),
    ("Toronto", 43.6532, -79.3832),
    ("Montreal", 45.5019, -73.5674),
    ("Vancouver", 49.2827, -123.1207),
    ("Mexico City", 19.4326, -99.1332),
    ("São Paulo", -23.5505, -46.6333),
    ("Buenos Aires", -34.6037, -58.3816),
    ("Tokyo", 35.6762, 139.6503),
    ("Seoul", 37.5665, 126.9780),
    ("Singapore", 1.3521, 103.8198),
    ("Sydney", -33.8688, 151.2093),
    ("Melbourne", -37.8136, 144.9631),
    ("Auckland", -36.8485, 174.7633),
];

/// The ten categories of the generated catalog.
pub const CATEGORIES: &[&str] =
    &["concert", "sports", "theater", "comedy", "family", "festival", "opera", "classical", "dance", "talk"];

/// A small deterministic generator (SplitMix64): the demo must not change when a
/// dependency's random number generator does.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const BAND_WORDS: &[&str] = &[
    "Velvet", "Electric", "Midnight", "Golden", "Silver", "Paper", "Neon", "Wild", "Crimson", "Hollow",
    "Northern", "Lucky", "Broken", "Glass", "Echo", "Static",
];
const BAND_NOUNS: &[&str] =
    &["Foxes", "Rivers", "Harbors", "Lanterns", "Pilots", "Wolves", "Comets", "Tigers", "Ghosts", "Mirrors"];
const FIRST_NAMES: &[&str] = &[
    "Ada", "Ben", "Clara", "Dev", "Elena", "Finn", "Grace", "Hugo", "Iris", "Jonas", "Kira", "Leo", "Maya",
    "Nico", "Olivia", "Pablo", "Quinn", "Rosa", "Sami", "Talia",
];
const LAST_NAMES: &[&str] = &[
    "Moreau",
    "Okafor",
    "Lindqvist",
    "Nakamura",
    "Rossi",
    "Kowalski",
    "Haddad",
    "Fischer",
    "Silva",
    "Byrne",
    "Novak",
    "Castillo",
];
const MUSIC_GENRES: &[&str] = &["pop", "rock", "indie", "hip hop", "country", "electronic", "folk", "jazz"];
const TEAM_ANIMALS: &[&str] = &["Hawks", "Bears", "Lions", "Falcons", "Sharks", "Wolves", "Stags", "Comets"];
const SPORTS: &[&str] = &["basketball", "football", "hockey", "baseball", "rugby"];
const PLAYS: &[&str] = &[
    "Hamlet",
    "Macbeth",
    "Romeo and Juliet",
    "The Tempest",
    "A Doll's House",
    "Death of a Salesman",
    "The Seagull",
    "Cyrano de Bergerac",
    "Pygmalion",
    "Waiting for Godot",
    "The Importance of Being Earnest",
    "Twelfth Night",
];
const OPERAS: &[&str] = &[
    "La Traviata",
    "Carmen",
    "Tosca",
    "The Magic Flute",
    "Madama Butterfly",
    "Aida",
    "La Bohème",
    "Don Giovanni",
    "Rigoletto",
    "The Barber of Seville",
];
const WORKS: &[&str] = &[
    "Beethoven: Symphony No. 9",
    "Mahler: Symphony No. 5",
    "Brahms: Violin Concerto",
    "Mozart: Requiem",
    "Dvořák: New World Symphony",
    "Tchaikovsky: Piano Concerto No. 1",
    "Vivaldi: The Four Seasons",
    "Rachmaninoff: Piano Concerto No. 2",
];
const BALLETS: &[&str] =
    &["Swan Lake", "The Nutcracker", "Giselle", "Don Quixote", "Flamenco Night", "Contemporary Works"];
const FAMILY_SHOWS: &[&str] = &[
    "Dinosaur Live!",
    "The Magic Circus",
    "Puppet Parade",
    "Science Show Spectacular",
    "Fairy Tales on Ice",
    "Pirates and Mermaids",
];
const FESTIVAL_THEMES: &[&str] =
    &["Jazz", "Folk", "Summer Sounds", "Electronic", "Food & Music", "Blues", "World Music"];
const COMEDY_TITLES: &[&str] = &["Unfiltered", "No Refunds", "Late Show", "Work in Progress", "Overthinking"];
const TALK_TOPICS: &[&str] = &[
    "the Deep Ocean",
    "Black Holes",
    "the Future of Cities",
    "Ancient Rome",
    "Machine Learning",
    "Mountains",
];
const TOUR_WORDS: &[&str] = &["World", "Homecoming", "Farewell", "Summer", "Afterglow", "Horizons"];
const VENUE_KINDS: &[&str] = &["Music Hall", "Playhouse", "Auditorium", "Club", "Pavilion", "Theatre"];

/// The seat maps of generated venues: 160 to 500 seats.
fn small_layout(kind: usize) -> SeatMap {
    let three = ["premium", "standard", "economy"];
    match kind % 3 {
        0 => layout(&three, &[("Floor", 8, 20, "standard"), ("Balcony", 2, 20, "premium")]),
        1 => layout(&three, &[("Stalls", 10, 20, "premium"), ("Circle", 8, 20, "standard")]),
        _ => layout(&three, &[("A", 6, 25, "premium"), ("B", 8, 25, "standard"), ("C", 6, 25, "economy")]),
    }
}

/// A generated venue: `(name, city index, lat, lon, layout kind)`.
struct GenVenue {
    name: String,
    city: usize,
    lat: f64,
    lon: f64,
    kind: usize,
}

/// A generated event, its venue and performers by index into the generated lists.
struct GenEvent {
    name: String,
    venue: usize,
    performers: Vec<usize>,
    category: &'static str,
    description: String,
    start_hours: u64,
    /// Negative: already on sale.
    onsale_hours: i64,
    base_price: i64,
}

/// The generated catalog: venues, `(performer, genre)` and events.
struct GenCatalog {
    venues: Vec<GenVenue>,
    performers: Vec<(String, String)>,
    events: Vec<GenEvent>,
}

impl GenCatalog {
    fn performer(&mut self, name: String, genre: &str) -> usize {
        match self.performers.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                self.performers.push((name, genre.to_owned()));
                self.performers.len() - 1
            }
        }
    }
}

/// The generated catalog, the same for every call.
fn generated_catalog() -> GenCatalog {
    let mut rng = SplitMix(GENERATOR_SEED);
    let mut catalog = GenCatalog { venues: Vec::new(), performers: Vec::new(), events: Vec::new() };
    for (city_index, &(city, lat, lon)) in CITIES.iter().enumerate() {
        for _ in 0..2 {
            let kind = rng.below(VENUE_KINDS.len());
            let name = format!("{city} {}", VENUE_KINDS[kind]);
            if catalog.venues.iter().any(|v| v.name == name) {
                continue;
            }
            // Within about 5 km of the centre.
            let jitter = |r: &mut SplitMix| (r.below(1_001) as f64 - 500.0) / 10_000.0;
            let round = |degrees: f64| (degrees * 10_000.0).round() / 10_000.0;
            catalog.venues.push(GenVenue {
                name,
                city: city_index,
                lat: round(lat + jitter(&mut rng)),
                lon: round(lon + jitter(&mut rng)),
                kind,
            });
        }
    }
    for n in 0..GENERATED_EVENTS {
        // Every category gets a tenth of the events.
        let category = CATEGORIES[n % CATEGORIES.len()];
        let venue = rng.below(catalog.venues.len());
        let city = CITIES[catalog.venues[venue].city].0;
        let solo = |r: &mut SplitMix| format!("{} {}", r.pick(FIRST_NAMES), r.pick(LAST_NAMES));
        let (name, performers, blurb, base_price) = match category {
            "concert" => {
                let band = if rng.below(2) == 0 {
                    format!("The {} {}", rng.pick(BAND_WORDS), rng.pick(BAND_NOUNS))
                } else {
                    solo(&mut rng)
                };
                let genre = *rng.pick(MUSIC_GENRES);
                let p = catalog.performer(band.clone(), genre);
                let name = match rng.below(3) {
                    0 => format!("{band}: {} Tour", rng.pick(TOUR_WORDS)),
                    1 => format!("{band} Live in {city}"),
                    _ => format!("{band}: An Intimate Evening"),
                };
                (name, vec![p], format!("A {genre} night with {band}."), 4_500)
            }
            "sports" => {
                let sport = *rng.pick(SPORTS);
                let home = format!("{city} {}", rng.pick(TEAM_ANIMALS));
                let away_city = CITIES[rng.below(CITIES.len())].0;
                let away = format!("{away_city} {}", rng.pick(TEAM_ANIMALS));
                let (h, a) = (catalog.performer(home.clone(), sport), catalog.performer(away.clone(), sport));
                (
                    format!("{home} vs {away}"),
                    vec![h, a],
                    format!("League {sport}: {home} host {away}."),
                    3_500,
                )
            }
            "theater" => {
                let play = *rng.pick(PLAYS);
                let p = catalog.performer(format!("{city} Repertory Company"), "drama");
                (
                    play.to_owned(),
                    vec![p],
                    format!("{play}, a new staging by the {city} Repertory Company."),
                    5_500,
                )
            }
            "comedy" => {
                let comic = solo(&mut rng);
                let p = catalog.performer(comic.clone(), "comedy");
                (
                    format!("{comic}: {}", rng.pick(COMEDY_TITLES)),
                    vec![p],
                    format!("Stand-up comedy from {comic}."),
                    3_000,
                )
            }
            "family" => {
                let show = *rng.pick(FAMILY_SHOWS);
                (
                    show.to_owned(),
                    Vec::new(),
                    format!("{show}: fun for the whole family, ages 3 and up."),
                    2_000,
                )
            }
            "festival" => {
                let theme = *rng.pick(FESTIVAL_THEMES);
                let band = format!("The {} {}", rng.pick(BAND_WORDS), rng.pick(BAND_NOUNS));
                let p = catalog.performer(band.clone(), "festival");
                (
                    format!("{city} {theme} Festival"),
                    vec![p],
                    format!("A day of {theme} with {band} and friends."),
                    7_000,
                )
            }
            "opera" => {
                let opera = *rng.pick(OPERAS);
                let p = catalog.performer(format!("{city} Opera"), "opera");
                (
                    opera.to_owned(),
                    vec![p],
                    format!("{opera}, sung in the original language with surtitles."),
                    8_000,
                )
            }
            "classical" => {
                let work = *rng.pick(WORKS);
                let p = catalog.performer(format!("{city} Symphony Orchestra"), "classical");
                (work.to_owned(), vec![p], format!("The {city} Symphony Orchestra plays {work}."), 6_000)
            }
            "dance" => {
                let ballet = *rng.pick(BALLETS);
                let p = catalog.performer(format!("{city} Ballet"), "ballet");
                (ballet.to_owned(), vec![p], format!("{ballet}, danced by the {city} Ballet."), 6_500)
            }
            _ => {
                let topic = *rng.pick(TALK_TOPICS);
                let speaker = solo(&mut rng);
                let p = catalog.performer(speaker.clone(), "speaker");
                (
                    format!("An Evening with {speaker}: {topic}"),
                    vec![p],
                    format!("{speaker} on {topic}, then questions."),
                    2_500,
                )
            }
        };
        // Over the next year, evenings; on sale already for about 60% of them.
        let start_days = 1 + rng.below(365) as u64;
        let start_hours = start_days * 24 + 18 + rng.below(4) as u64;
        let onsale_hours = if rng.below(10) < 6 {
            -(24 * (1 + rng.below(60)) as i64)
        } else {
            24 * (rng.below(start_days as usize) as i64)
        };
        let venue_name = &catalog.venues[venue].name;
        catalog.events.push(GenEvent {
            name,
            venue,
            performers,
            category,
            description: format!("{blurb} At {venue_name}, {city}."),
            start_hours,
            onsale_hours,
            base_price: base_price + (rng.below(7) as i64 - 3) * 500,
        });
    }
    catalog
}

/// What the generated part of the demo added.
struct Generated {
    venues: usize,
    events: usize,
}

/// Creates the generated catalog: venues and performers one by one, the events in one
/// transaction (each copies a small seat map), then loads the events into the inventory.
async fn seed_generated(state: &AppState, base: u64) -> Result<Generated, StartError> {
    let store = state.store.as_ref();
    let catalog = generated_catalog();
    let mut venue_ids = Vec::with_capacity(catalog.venues.len());
    let mut venue_tiers = Vec::with_capacity(catalog.venues.len());
    for v in &catalog.venues {
        let map = small_layout(v.kind);
        venue_tiers.push(map.tiers().to_vec());
        let venue = store
            .create_venue(NewVenue {
                name: v.name.clone(),
                city: CITIES[v.city].0.into(),
                lat: v.lat,
                lon: v.lon,
                address: None,
                map: Arc::new(map),
            })
            .await?;
        venue_ids.push(venue.id);
    }
    let mut performer_ids = Vec::with_capacity(catalog.performers.len());
    for (name, genre) in &catalog.performers {
        performer_ids.push(store.create_performer(name, Some(genre)).await?.id);
    }
    let events: Vec<NewEvent> = catalog
        .events
        .iter()
        .map(|e| {
            let starts_at = base + e.start_hours * HOUR_MS;
            let onsale_at = base.saturating_add_signed(e.onsale_hours * HOUR_MS as i64);
            NewEvent {
                name: e.name.clone(),
                venue_id: venue_ids[e.venue],
                performer_ids: e.performers.iter().map(|&p| performer_ids[p]).collect(),
                category: e.category.into(),
                starts_at,
                onsale_at: onsale_at.min(starts_at),
                prices: venue_tiers[e.venue]
                    .iter()
                    .enumerate()
                    .map(|(rank, tier)| {
                        (tier.clone(), Money::new(e.base_price / (rank as i64 + 1), Currency::USD))
                    })
                    .collect(),
                description: Some(e.description.clone()),
            }
        })
        .collect();
    let ids = store.create_events(events).await?;
    for &id in &ids {
        crate::load_event(state, id).await?;
    }
    Ok(Generated { venues: venue_ids.len(), events: ids.len() })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

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

    #[test]
    fn the_generated_catalog_is_large_varied_small_seated_and_always_the_same() {
        let catalog = generated_catalog();
        assert_eq!(catalog.events.len(), GENERATED_EVENTS);
        assert!(EVENTS.len() + catalog.events.len() >= 2_000);
        let cities: HashSet<usize> = catalog.events.iter().map(|e| catalog.venues[e.venue].city).collect();
        assert!(cities.len() >= 50, "{} cities", cities.len());
        let categories: HashSet<&str> = catalog.events.iter().map(|e| e.category).collect();
        assert_eq!(categories.len(), 10);
        assert!(catalog.venues.iter().all(|v| small_layout(v.kind).len() <= 500));
        assert!(catalog.events.iter().all(|e| e.performers.iter().all(|&p| p < catalog.performers.len())));
        assert!(catalog.events.iter().all(|e| e.onsale_hours < e.start_hours as i64 && e.base_price > 0));
        let again = generated_catalog();
        let names = |c: &GenCatalog| c.events.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&catalog), names(&again), "a fixed seed");
    }
}
