//! Contention: many buyers at once over few seats. Holds are all-or-nothing and never
//! overlap; a conflict names only seats that are really taken; the bitmap ends equal to
//! the union of the successful holds; a hold is bought exactly once however many
//! checkouts race for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::helpers::{TestApp, bit, send, spawn, spawn_with};

const USERS: usize = 500;
const REQUESTS_PER_USER: usize = 4;
const ROWS: u32 = 2;
const SEATS_PER_ROW: u32 = 10;

/// Seat counts of one user's four requests: each adds up to at most 8, the per-user
/// limit, so that `HOLD_LIMIT` can never answer (even if all four succeeded).
const SIZE_PATTERNS: &[[usize; REQUESTS_PER_USER]] =
    &[[1, 1, 2, 4], [1, 2, 2, 3], [2, 2, 2, 2], [1, 1, 3, 3], [1, 1, 1, 4], [1, 1, 1, 1], [1, 1, 2, 2]];

/// Every seat label of the test venue (one section A of 2 rows x 10 seats).
fn all_labels() -> Vec<String> {
    (1..=ROWS).flat_map(|row| (1..=SEATS_PER_ROW).map(move |n| format!("A-{row}-{n}"))).collect()
}

/// `size` seats: half the time a run of adjacent seats in one row (what buyers ask
/// for), otherwise any seats of the event, so that the requests overlap every way.
fn pick_seats(rng: &mut StdRng, size: usize) -> Vec<String> {
    if size > 1 && rng.random_bool(0.5) {
        let row = rng.random_range(1..=ROWS);
        let first = rng.random_range(1..=SEATS_PER_ROW - size as u32 + 1);
        (first..first + size as u32).map(|n| format!("A-{row}-{n}")).collect()
    } else {
        let labels = all_labels();
        labels.choose_multiple(rng, size).cloned().collect()
    }
}

/// The label -> index map of the event, from its seats document.
async fn seat_indexes(app: &TestApp, event: &str) -> HashMap<String, u32> {
    let (status, seats) = app.get(&format!("/v1/events/{event}/seats"), None).await;
    assert_eq!(status, StatusCode::OK, "{seats}");
    seats["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| (s["label"].as_str().unwrap().to_owned(), s["index"].as_u64().unwrap() as u32))
        .collect()
}

fn labels_of(hold: &Value) -> Vec<String> {
    hold["seats"].as_array().expect("seats").iter().map(|s| s["label"].as_str().unwrap().to_owned()).collect()
}

async fn mint_tokens(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let client = app.client.clone();
        let url = app.url("/v1/auth/token");
        let user = format!("{prefix}{i:04}");
        tasks.spawn(async move {
            let (status, body) = send(client.post(url).json(&json!({"user": user, "role": "fan"}))).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            (i, body["token"].as_str().expect("token").to_owned())
        });
    }
    let mut tokens = vec![String::new(); n];
    while let Some(joined) = tasks.join_next().await {
        let (i, token) = joined.expect("token task");
        tokens[i] = token;
    }
    tokens
}

struct Outcome {
    user: usize,
    asked: Vec<String>,
    status: StatusCode,
    body: Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_concurrent_holds_never_overlap_and_conflicts_name_only_taken_seats() {
    let app = spawn().await;
    let admin = app.token("admin", "admin").await;
    let event = app.on_sale_event(&admin, &[("A", ROWS, SEATS_PER_ROW, "premium")]).await;
    let indexes = seat_indexes(&app, &event).await;
    assert_eq!(indexes.len(), (ROWS * SEATS_PER_ROW) as usize);
    let tokens = mint_tokens(&app, "fan", USERS).await;

    let mut rng = StdRng::seed_from_u64(0x5eed_b0c5);
    let mut requests: Vec<(usize, Vec<String>)> = Vec::with_capacity(USERS * REQUESTS_PER_USER);
    for user in 0..USERS {
        for &size in SIZE_PATTERNS.choose(&mut rng).expect("patterns") {
            requests.push((user, pick_seats(&mut rng, size)));
        }
    }
    requests.shuffle(&mut rng);
    let singles = requests.iter().filter(|(_, s)| s.len() == 1).count();
    assert!(singles > 500 && singles < requests.len() - 500, "a mix of single and multi-seat requests");

    // Every request waits at the barrier, so that all 2,000 go out at once.
    let barrier = Arc::new(Barrier::new(requests.len()));
    let url = app.url(&format!("/v1/events/{event}/holds"));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (user, asked) in requests {
        let client = app.client.clone();
        let url = url.clone();
        let token = tokens[user].clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let (status, body) =
                send(client.post(url).bearer_auth(token).json(&json!({"seats": asked}))).await;
            Outcome { user, asked, status, body }
        });
    }
    let mut outcomes = Vec::with_capacity(USERS * REQUESTS_PER_USER);
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.expect("hold task"));
    }
    let elapsed = started.elapsed();
    assert_eq!(outcomes.len(), USERS * REQUESTS_PER_USER);

    // Successful holds: all the seats asked for, none in two holds.
    let mut holder: HashMap<String, String> = HashMap::new();
    let mut successes: Vec<&Outcome> = Vec::new();
    let mut conflicts = 0;
    for o in &outcomes {
        match o.status {
            StatusCode::CREATED => {
                assert_eq!(o.body["status"], "held", "{}", o.body);
                let mut got = labels_of(&o.body);
                got.sort();
                let mut asked = o.asked.clone();
                asked.sort();
                assert_eq!(got, asked, "a hold holds exactly the seats asked for");
                for s in o.body["seats"].as_array().unwrap() {
                    assert_eq!(s["index"].as_u64().unwrap() as u32, indexes[s["label"].as_str().unwrap()]);
                }
                let id = o.body["hold_id"].as_str().expect("hold id").to_owned();
                for label in got {
                    if let Some(other) = holder.insert(label.clone(), id.clone()) {
                        panic!("seat {label} is in two holds: {other} and {id}");
                    }
                }
                successes.push(o);
            }
            StatusCode::CONFLICT => {
                assert_eq!(o.body["error"]["code"], "SEATS_UNAVAILABLE", "{}", o.body);
                conflicts += 1;
            }
            // The fan-first orphan rule may refuse a hold that would strand a seat.
            StatusCode::UNPROCESSABLE_ENTITY if o.body["error"]["code"] == "ORPHAN_SEAT" => {}
            other => panic!("unexpected {other}: {} (asked {:?} as user {})", o.body, o.asked, o.user),
        }
    }
    assert!(!successes.is_empty(), "someone gets seats");
    assert!(conflicts > 0, "2,000 requests over 20 seats must conflict");

    // A conflict names only seats it asked for, each really taken: nothing is released
    // during the test, so a seat unavailable then is in one of the successful holds.
    for o in outcomes.iter().filter(|o| o.status == StatusCode::CONFLICT) {
        let named: Vec<&str> = o.body["error"]["seats"]
            .as_array()
            .expect("seats named")
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(!named.is_empty(), "a conflict names its seats: {}", o.body);
        for label in named {
            assert!(
                o.asked.iter().any(|a| a == label),
                "{label} was not asked for: {:?} {}",
                o.asked,
                o.body
            );
            assert!(
                holder.contains_key(label),
                "{label} is named unavailable but no hold has it: {}",
                o.body
            );
        }
    }

    // Per user, held seats stay within the limit (by construction, and the server agrees).
    let mut per_user: HashMap<usize, usize> = HashMap::new();
    for o in &successes {
        *per_user.entry(o.user).or_default() += o.asked.len();
    }
    assert!(per_user.values().all(|&n| n <= 8));

    // The bitmap: 0 exactly for the held seats.
    let (bitmap, _) = app.bitmap(&event).await;
    assert_eq!(bitmap.len(), ((ROWS * SEATS_PER_ROW) as usize).div_ceil(8));
    for (label, &index) in &indexes {
        assert_eq!(bit(&bitmap, index), !holder.contains_key(label), "seat {label} (index {index})");
    }

    // Each successful hold reads back as held, with its seats, by its owner.
    for o in &successes {
        let id = o.body["hold_id"].as_str().unwrap();
        let (status, hold) = app.get(&format!("/v1/holds/{id}"), Some(&tokens[o.user])).await;
        assert_eq!(status, StatusCode::OK, "{hold}");
        assert_eq!(hold["status"], "held");
        assert_eq!(labels_of(&hold), labels_of(&o.body));
    }
    eprintln!(
        "contention: {} requests in {elapsed:?}: {} held ({} seats), {conflicts} conflicts",
        outcomes.len(),
        successes.len(),
        holder.len()
    );
}

/// Checkout answers of one race: the order (201) or a conflict.
fn check_losers(answers: &[(StatusCode, Value)], order_id: &str) {
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(*status, StatusCode::CONFLICT, "{body}");
        match body["error"]["code"].as_str() {
            Some("CHECKOUT_IN_PROGRESS") => {}
            Some("ALREADY_CONFIRMED") => {
                assert_eq!(body["error"]["order_id"], order_id, "ALREADY_CONFIRMED names the order: {body}")
            }
            _ => panic!("unexpected loser answer {status}: {body}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checkouts_of_one_hold_sell_it_exactly_once() {
    // A little gateway latency makes the checkouts overlap; holds without latency too.
    for latency in [(0, 0), (5, 30)] {
        let app = spawn_with(|c| c.payment_latency_ms = latency).await;
        let admin = app.token("admin", "admin").await;
        let event = app.on_sale_event(&admin, &[("A", 4, 10, "premium")]).await;
        let indexes = seat_indexes(&app, &event).await;
        const BUYERS: usize = 20;
        const RACERS: usize = 8;
        let tokens = mint_tokens(&app, "buyer", BUYERS).await;

        // Each buyer holds two adjacent seats.
        let mut holds = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            let row = i / 5 + 1;
            let n = (i % 5) * 2 + 1;
            let seats = [format!("A-{row}-{n}"), format!("A-{row}-{}", n + 1)];
            let seats: Vec<&str> = seats.iter().map(String::as_str).collect();
            let (status, hold) = app.hold(token, &event, &seats).await;
            assert_eq!(status, StatusCode::CREATED, "{hold}");
            holds.push(hold);
        }

        // Every hold gets RACERS checkouts at once, each under its own key.
        let barrier = Arc::new(Barrier::new(BUYERS * RACERS));
        let mut tasks = JoinSet::new();
        for (i, hold) in holds.iter().enumerate() {
            for racer in 0..RACERS {
                let client = app.client.clone();
                let url = app.url(&format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap()));
                let token = tokens[i].clone();
                let barrier = barrier.clone();
                tasks.spawn(async move {
                    barrier.wait().await;
                    let req = client
                        .post(url)
                        .bearer_auth(token)
                        .header("Idempotency-Key", format!("race-{i}-{racer}"))
                        .json(&json!({"payment": {"method": "card", "token": "tok_visa"}}));
                    (i, send(req).await)
                });
            }
        }
        let mut answers: Vec<Vec<(StatusCode, Value)>> = vec![Vec::new(); BUYERS];
        while let Some(joined) = tasks.join_next().await {
            let (i, answer) = joined.expect("checkout task");
            answers[i].push(answer);
        }

        let (bitmap, _) = app.bitmap(&event).await;
        for (i, hold) in holds.iter().enumerate() {
            let hold_id = hold["hold_id"].as_str().unwrap();
            let wins: Vec<&Value> =
                answers[i].iter().filter(|(s, _)| *s == StatusCode::CREATED).map(|(_, b)| b).collect();
            assert_eq!(wins.len(), 1, "latency {latency:?}: exactly one checkout wins: {:?}", answers[i]);
            let order = wins[0];
            let order_id = order["order_id"].as_str().expect("order id");
            assert_eq!(order["hold_id"], hold_id);
            assert_eq!(order["status"], "confirmed");
            check_losers(&answers[i], order_id);

            // The hold's seats are in exactly one order, the winner's.
            let (status, mine) = app.get("/v1/me/orders", Some(&tokens[i])).await;
            assert_eq!(status, StatusCode::OK, "{mine}");
            let items = mine["items"].as_array().expect("items");
            assert_eq!(items.len(), 1, "one order for the buyer: {mine}");
            assert_eq!(items[0]["order_id"], order_id);
            let mut sold = labels_of(&items[0]);
            sold.sort();
            let mut held = labels_of(hold);
            held.sort();
            assert_eq!(sold, held);
            let tickets = items[0]["tickets"].as_array().expect("tickets");
            assert_eq!(tickets.len(), held.len());
            for label in &held {
                assert!(!bit(&bitmap, indexes[label]), "sold seat {label} is unavailable");
            }
            let (status, after) = app.get(&format!("/v1/holds/{hold_id}"), Some(&tokens[i])).await;
            assert_eq!(status, StatusCode::OK, "{after}");
            assert_eq!(after["status"], "confirmed");
        }
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for (status, body) in answers.iter().flatten() {
            let code = body["error"]["code"].as_str().map_or_else(|| status.to_string(), str::to_owned);
            *codes.entry(code).or_default() += 1;
        }
        eprintln!("checkout race (gateway latency {latency:?} ms): {codes:?}");
        let sold: usize = holds.iter().map(|h| labels_of(h).len()).sum();
        let available = (0..40u32).filter(|&i| bit(&bitmap, i)).count();
        assert_eq!(available, 40 - sold, "only the bought seats are unavailable");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkout_racing_a_release_has_one_winner() {
    let app = spawn_with(|c| c.payment_latency_ms = (5, 15)).await;
    let admin = app.token("admin", "admin").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    let indexes = seat_indexes(&app, &event).await;
    const BUYERS: usize = 20;
    let tokens = mint_tokens(&app, "racer", BUYERS).await;
    let labels = all_labels();
    let mut holds = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let (status, hold) = app.hold(token, &event, &[labels[i].as_str()]).await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
        holds.push(hold);
    }

    let barrier = Arc::new(Barrier::new(BUYERS * 2));
    let mut tasks = JoinSet::new();
    for (i, hold) in holds.iter().enumerate() {
        let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
        for release in [false, true] {
            let client = app.client.clone();
            let token = tokens[i].clone();
            let barrier = barrier.clone();
            let url = if release {
                app.url(&format!("/v1/holds/{hold_id}"))
            } else {
                app.url(&format!("/v1/holds/{hold_id}/checkout"))
            };
            tasks.spawn(async move {
                barrier.wait().await;
                if release {
                    // Staggered, so that either side wins some of the races.
                    tokio::time::sleep(Duration::from_millis(i as u64 % 10 * 5)).await;
                }
                let req = if release {
                    client.delete(url).bearer_auth(token)
                } else {
                    client
                        .post(url)
                        .bearer_auth(token)
                        .header("Idempotency-Key", format!("buy-{i}"))
                        .json(&json!({"payment": {"method": "card", "token": "tok_visa"}}))
                };
                (i, release, send(req).await)
            });
        }
    }
    let mut buys: HashMap<usize, (StatusCode, Value)> = HashMap::new();
    let mut releases: HashMap<usize, (StatusCode, Value)> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, release, answer) = joined.expect("race task");
        if release {
            releases.insert(i, answer)
        } else {
            buys.insert(i, answer)
        };
    }

    let (bitmap, _) = app.bitmap(&event).await;
    let (mut bought, mut released) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..BUYERS {
        let (buy_status, buy) = &buys[&i];
        let (release_status, release) = &releases[&i];
        let hold_id = holds[i]["hold_id"].as_str().unwrap();
        let (_, mine) = app.get("/v1/me/orders", Some(&tokens[i])).await;
        let orders = mine["items"].as_array().expect("items").len();
        let seat = indexes[&labels[i]];
        match (*buy_status, *release_status) {
            (StatusCode::CREATED, StatusCode::CONFLICT) => {
                let code = release["error"]["code"].as_str();
                assert!(matches!(code, Some("HOLD_CONFIRMING" | "ALREADY_CONFIRMED")), "{release}");
                assert_eq!(orders, 1);
                assert!(!bit(&bitmap, seat), "a bought seat is unavailable");
                bought.insert(i);
            }
            (StatusCode::GONE, StatusCode::NO_CONTENT) => {
                assert_eq!(buy["error"]["code"], "HOLD_EXPIRED", "{buy}");
                assert_eq!(orders, 0, "a released hold is never bought");
                assert!(bit(&bitmap, seat), "a released seat is available");
                let (_, after) = app.get(&format!("/v1/holds/{hold_id}"), Some(&tokens[i])).await;
                assert_eq!(after["status"], "released");
                released.insert(i);
            }
            _ => panic!("hold {i}: checkout {buy_status} {buy}, release {release_status} {release}"),
        }
    }
    eprintln!("checkout vs release: {} bought, {} released", bought.len(), released.len());
}

/// Guards the contention test's premise: its requests stay within the per-user limit.
#[test]
fn size_patterns_stay_within_the_per_user_limit() {
    for pattern in SIZE_PATTERNS {
        assert!(pattern.iter().sum::<usize>() <= 8);
        assert!(pattern.iter().all(|&n| (1..=4).contains(&n)));
    }
}
