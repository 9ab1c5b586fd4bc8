//! Search measurements for docs/benchmarks.md:
//!
//! ```sh
//! cargo run --release -p boxoffice-server --example search_bench -- demo [queries]
//! cargo run --release -p boxoffice-server --example search_bench -- synthetic [events] [queries]
//! ```
//!
//! - `demo`: a server in this process with the `--demo` catalog (2,024 events), then
//!   queries/s and latency per query kind through the `SearchIndex` trait (in process),
//!   and requests/s of `GET /v1/search` over HTTP (64 connections on loopback).
//! - `synthetic`: an index of generated events (default 100,000) built in a temp dir:
//!   build time, size on disk, and p50/p99 of text, filter-only and geo queries on the
//!   calling thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_search::{EventDoc, GeoRadius, Price, SearchQuery, TantivyIndex};
use boxoffice_server::demo::{CATEGORIES, CITIES};
use boxoffice_server::{Application, Config};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A fixed-seed generator (SplitMix64), so runs ask the same queries.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "hamlet",
    "jazz",
    "festival",
    "symphony",
    "orchestra",
    "ballet",
    "comedy",
    "velvet",
    "lanterns",
    "opera",
    "tosca",
    "carmen",
    "swan",
    "lake",
    "nutcracker",
    "summer",
    "tour",
    "live",
    "magic",
    "circus",
];
const TYPOS: &[&str] = &["hamlt", "festivl", "symphny", "orchestrs", "balet", "lantrens", "nutcrackr"];

/// The kinds of query measured, and a generator of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// One or two words.
    Text,
    /// A word of 5+ letters with a typo.
    Typo,
    /// City or category and a date range, no text.
    Filter,
    /// 50 km around a city, date order.
    Geo,
    /// Text, category and a radius.
    Combined,
}

const KINDS: [Kind; 5] = [Kind::Text, Kind::Typo, Kind::Filter, Kind::Geo, Kind::Combined];

fn query(kind: Kind, rng: &mut Rng, now: u64) -> SearchQuery {
    let word = |rng: &mut Rng| WORDS[rng.below(WORDS.len())];
    let city = |rng: &mut Rng| CITIES[rng.below(CITIES.len())];
    let base = SearchQuery { limit: 20, ..SearchQuery::default() };
    match kind {
        Kind::Text => {
            let text =
                if rng.below(2) == 0 { word(rng).to_owned() } else { format!("{} {}", word(rng), word(rng)) };
            SearchQuery { text: Some(text), ..base }
        }
        Kind::Typo => SearchQuery { text: Some(TYPOS[rng.below(TYPOS.len())].to_owned()), ..base },
        Kind::Filter => {
            let from = now + rng.below(200) as u64 * 86_400_000;
            let (city, category) = if rng.below(2) == 0 {
                (Some(city(rng).0.to_owned()), None)
            } else {
                (None, Some(CATEGORIES[rng.below(CATEGORIES.len())].to_owned()))
            };
            SearchQuery { city, category, from: Some(from), to: Some(from + 60 * 86_400_000), ..base }
        }
        Kind::Geo => {
            let (_, lat, lon) = city(rng);
            SearchQuery { near: Some(GeoRadius { lat, lon, radius_km: 50.0 }), ..base }
        }
        Kind::Combined => {
            let (_, lat, lon) = city(rng);
            SearchQuery {
                text: Some(word(rng).to_owned()),
                category: Some(CATEGORIES[rng.below(CATEGORIES.len())].to_owned()),
                near: Some(GeoRadius { lat, lon, radius_km: 500.0 }),
                ..base
            }
        }
    }
}

/// The query string of the same search for `GET /v1/search`.
fn query_string(q: &SearchQuery) -> String {
    let mut parts = vec![format!("limit={}", q.limit)];
    let enc = |s: &str| s.replace(' ', "+");
    if let Some(t) = &q.text {
        parts.push(format!("q={}", enc(t)));
    }
    if let Some(c) = &q.city {
        parts.push(format!("city={}", enc(c)));
    }
    if let Some(c) = &q.category {
        parts.push(format!("category={c}"));
    }
    let time = |ms: u64| {
        chrono::DateTime::from_timestamp_millis(ms as i64)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    if let Some(from) = q.from {
        parts.push(format!("from={}", time(from)));
    }
    if let Some(to) = q.to {
        parts.push(format!("to={}", time(to)));
    }
    if let Some(n) = q.near {
        parts.push(format!("lat={}&lon={}&radius_km={}", n.lat, n.lon, n.radius_km));
    }
    parts.join("&")
}

fn now_ms() -> u64 {
    boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock)
}

/// p50, p99 and max of durations, in ms.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99), at(1.0))
}

/// Runs `per_kind` queries of each kind, one at a time, through `search`; prints a table.
fn measure(per_kind: usize, mut search: impl FnMut(&SearchQuery) -> usize) {
    println!("| query kind | queries | queries/s (one thread) | p50 ms | p99 ms | max ms | mean hits |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let now = now_ms();
    let mut all = Vec::new();
    let mut total = Duration::ZERO;
    for kind in KINDS {
        let mut rng = Rng(42);
        let queries: Vec<SearchQuery> = (0..per_kind).map(|_| query(kind, &mut rng, now)).collect();
        // Warm-up: the first queries map files and fill caches.
        for q in queries.iter().take(50) {
            search(q);
        }
        let mut samples = Vec::with_capacity(per_kind);
        let mut hits = 0;
        let started = Instant::now();
        for q in &queries {
            let t = Instant::now();
            hits += search(q);
            samples.push(t.elapsed());
        }
        let elapsed = started.elapsed();
        total += elapsed;
        all.extend(samples.iter().copied());
        let (p50, p99, max) = percentiles(samples);
        println!(
            "| {kind:?} | {per_kind} | {:.0} | {p50:.3} | {p99:.3} | {max:.3} | {:.1} |",
            per_kind as f64 / elapsed.as_secs_f64(),
            hits as f64 / per_kind as f64
        );
    }
    let n = all.len();
    let (p50, p99, max) = percentiles(all);
    println!("| all | {n} | {:.0} | {p50:.3} | {p99:.3} | {max:.3} | |", n as f64 / total.as_secs_f64());
}

fn demo(queries: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = Config::for_tests(dir.path().to_path_buf());
        config.demo = true;
        let started = Instant::now();
        let app = Application::build(config).await.expect("the app builds");
        let addr = app.local_addr();
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().pool_max_idle_per_host(128).build().expect("a client");
        loop {
            if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let docs = state.search.doc_count().await.expect("count");
        println!(
            "## demo catalog: {docs} events, seeded and indexed in {:.1} s\n",
            started.elapsed().as_secs_f64()
        );

        println!("### in process, through the `SearchIndex` trait (one task, awaiting each query)\n");
        let index = state.search.clone();
        let handle = tokio::runtime::Handle::current();
        let per_kind = queries / KINDS.len();
        tokio::task::spawn_blocking(move || {
            measure(per_kind, |q| handle.block_on(index.search(q.clone())).expect("search").hits.len())
        })
        .await
        .expect("measured");

        println!(
            "\n### over HTTP: `GET /v1/search`, 64 connections on loopback, client in the same process\n"
        );
        println!("| query kind | requests | requests/s | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|---:|");
        let now = now_ms();
        for kind in KINDS.iter().copied().map(Some).chain([None]) {
            let mut rng = Rng(7);
            let urls: Arc<Vec<String>> = Arc::new(
                (0..queries)
                    .map(|i| {
                        let k = kind.unwrap_or(KINDS[i % KINDS.len()]);
                        format!("http://{addr}/v1/search?{}", query_string(&query(k, &mut rng, now)))
                    })
                    .collect(),
            );
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..64 {
                let (client, urls, next) = (client.clone(), urls.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let mut samples = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(url) = urls.get(i) else { return samples };
                        let t = Instant::now();
                        let r = client.get(url).send().await.expect("request");
                        assert!(r.status().is_success(), "{url}: {}", r.status());
                        r.bytes().await.expect("body");
                        samples.push(t.elapsed());
                    }
                }));
            }
            let mut samples = Vec::new();
            for t in tasks {
                samples.extend(t.await.expect("client task"));
            }
            let elapsed = started.elapsed();
            let (p50, p99, _) = percentiles(samples);
            let name = kind.map_or("mix of all".to_owned(), |k| format!("{k:?}"));
            println!(
                "| {name} | {queries} | {:.0} | {p50:.2} | {p99:.2} |",
                queries as f64 / elapsed.as_secs_f64()
            );
        }
        let _ = stop.send(());
        server.await.expect("server task").expect("server ran");
    });
}

/// `n` generated events over the demo's cities and categories, a year of dates.
fn synthetic_docs(n: usize) -> Vec<EventDoc> {
    let mut rng = Rng(2026);
    let now = now_ms();
    (0..n as u64)
        .map(|id| {
            let (city, lat, lon) = CITIES[rng.below(CITIES.len())];
            let category = CATEGORIES[rng.below(CATEGORIES.len())];
            let a = WORDS[rng.below(WORDS.len())];
            let b = WORDS[rng.below(WORDS.len())];
            let performer = format!("The {} {}", capital(a), capital(b));
            let jitter = |rng: &mut Rng| (rng.below(1_001) as f64 - 500.0) / 5_000.0;
            EventDoc {
                id: id + 1,
                name: format!(
                    "{performer}: {} {}",
                    capital(WORDS[rng.below(WORDS.len())]),
                    capital(category)
                ),
                performers: vec![performer.clone()],
                genres: vec![category.to_owned()],
                venue_id: rng.below(5_000) as u64,
                venue_name: format!("{city} Hall {}", rng.below(20)),
                city: city.to_owned(),
                category: category.to_owned(),
                description: Some(format!("{performer} in {city}: an evening of {category} and {a} {b}.")),
                starts_at: now + rng.below(365 * 24) as u64 * 3_600_000,
                onsale_at: now,
                status: "published".into(),
                seat_count: 500,
                lat: lat + jitter(&mut rng),
                lon: lon + jitter(&mut rng),
                price_min: Some(Price { amount: 1_500, currency: "USD".into() }),
                price_max: Some(Price { amount: 9_000, currency: "USD".into() }),
                sold_out: rng.below(20) == 0,
                updated_at: now,
            }
        })
        .collect()
}

fn capital(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

fn synthetic(n: usize, queries: usize) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let docs = synthetic_docs(n);
    let index = TantivyIndex::open(&dir.path().join("search")).expect("an index");
    let started = Instant::now();
    index.rebuild_blocking(docs, 1).expect("built");
    let built = started.elapsed();
    // Merges finish in the background; the size is what a reopen finds.
    drop(index);
    let index = TantivyIndex::open(&dir.path().join("search")).expect("reopened");
    let size = index.size_bytes().expect("size");
    println!("## synthetic catalog: {n} events\n");
    println!("- index build (one commit, one writer thread): {:.2} s", built.as_secs_f64());
    println!(
        "- index size on disk: {:.1} MiB ({} bytes per event)\n",
        size as f64 / 1048576.0,
        size / n as u64
    );
    println!("### in process, on the calling thread\n");
    measure(queries / KINDS.len(), |q| index.search_blocking(q).expect("search").hits.len());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str).unwrap_or("demo") {
        "demo" => demo(number(1, 20_000)),
        "synthetic" => synthetic(number(1, 100_000), number(2, 20_000)),
        other => {
            eprintln!("unknown mode {other}: demo [queries] | synthetic [events] [queries]");
            std::process::exit(2);
        }
    }
}
