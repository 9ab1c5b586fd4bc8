//! Set-up before the clock starts: the server is reachable and ready, the event exists
//! and its seat labels are known, one fan token per user is minted; all of it becomes
//! the workers' [`Plan`].

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::time::Instant;

use crate::api::{self, Api, ApiConn, COORDINATOR_LANES, parse, snippet};
use crate::client::{Requests, bearer, uri};
use crate::target::{Target, parse_targets};
use crate::worker::{Plan, Uris, safe_id};
use crate::zipf::{SeatDist, Zipf};
use crate::{Args, LoadError, Mix, Scenario};

#[derive(Deserialize)]
struct SeatsDocument {
    seats: Vec<SeatEntry>,
}

#[derive(Deserialize)]
struct SeatEntry {
    index: u32,
    label: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
}

/// Fails unless the server answers `/readyz` with 200 within 30 s.
pub(crate) async fn wait_ready(conn: &mut ApiConn, target: &Target) -> Result<(), LoadError> {
    let started = Instant::now();
    loop {
        let reply = conn.get("/readyz", None).await.map_err(|e| {
            LoadError::Setup(format!("cannot reach the server at {}: {e}. Is it running?", target.url))
        })?;
        if reply.status == 200 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(LoadError::Setup(format!(
                "the server at {} is not ready (GET /readyz answered {}) after 30 s",
                target.url, reply.status
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The event's seat labels by index, checking the event exists.
pub(crate) async fn load_event(
    conn: &mut ApiConn,
    target: &Target,
    event: &str,
    labels: bool,
) -> Result<Vec<String>, LoadError> {
    let reply = conn.get(&format!("/v1/events/{event}"), None).await?;
    match reply.status {
        200 => {}
        404 => {
            return Err(LoadError::Setup(format!(
                "event {event} does not exist at {} (the demo's on-sale stadium event is ev_1 of `boxoffice serve --demo`)",
                target.url
            )));
        }
        other => {
            return Err(LoadError::Protocol(format!(
                "GET /v1/events/{event} answered {other}: {}",
                snippet(&reply.body)
            )));
        }
    }
    if !labels {
        return Ok(Vec::new());
    }
    let reply = conn.get(&format!("/v1/events/{event}/seats"), None).await?;
    if reply.status != 200 {
        return Err(LoadError::Protocol(format!(
            "GET /v1/events/{event}/seats answered {}: {}",
            reply.status,
            snippet(&reply.body)
        )));
    }
    let doc: SeatsDocument = parse(&reply, "the seats document")?;
    let n = doc.seats.len();
    let mut labels = vec![String::new(); n];
    for seat in doc.seats {
        match labels.get_mut(seat.index as usize) {
            Some(slot) if slot.is_empty() && !seat.label.is_empty() => *slot = seat.label,
            _ => {
                return Err(LoadError::Protocol(format!(
                    "the seats document of {event} does not number its {n} seats 0..{n} once each (seat index {})",
                    seat.index
                )));
            }
        }
    }
    if labels.is_empty() {
        return Err(LoadError::Setup(format!("event {event} has no seats")));
    }
    Ok(labels)
}

/// Mints one fan token per user name.
pub(crate) async fn mint_tokens(api: &Arc<Api>, names: &[String]) -> Result<Vec<HeaderValue>, LoadError> {
    let tokens = api::parallel(api, names.to_vec(), COORDINATOR_LANES, |mut conn, name: String| async move {
        let body = serde_json::json!({"user": name, "role": "fan"}).to_string();
        let result = async {
            let reply = conn.call(Method::POST, "/v1/auth/token", None, &[], Some(Bytes::from(body))).await?;
            match reply.status {
                200 => {
                    let answer: TokenAnswer = parse(&reply, "POST /v1/auth/token")?;
                    bearer(&answer.token).map_err(|e| LoadError::Protocol(e.to_string()))
                }
                404 => Err(LoadError::Setup(
                    "the server does not mint tokens (POST /v1/auth/token answered 404): start it with --dev-auth or --demo"
                        .into(),
                )),
                other => Err(LoadError::Protocol(format!(
                    "POST /v1/auth/token for {name} answered {other}: {}",
                    snippet(&reply.body)
                ))),
            }
        }
        .await;
        (conn, result)
    })
    .await?;
    Ok(tokens)
}

/// The prefix of the run's user names: `--user-prefix`, or a fresh random one.
pub(crate) fn user_prefix(args: &Args, rng: &mut SmallRng) -> Result<String, LoadError> {
    match &args.user_prefix {
        Some(p) if p.len() <= 100 && !p.chars().any(char::is_control) => Ok(p.clone()),
        Some(p) => Err(LoadError::Usage(format!("--user-prefix {p:?}: at most 100 printable characters"))),
        None => Ok(format!("loadgen-{:08x}-", rng.random::<u32>())),
    }
}

/// Builds the plan from the flags and the server's answers.
pub(crate) async fn prepare(args: &Args) -> Result<(Arc<Api>, Plan), LoadError> {
    let targets = parse_targets(&args.target, args.allow_remote)?;
    let requests = targets
        .iter()
        .map(|t| Requests::new(&t.host))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::Usage(e.to_string()))?;
    // Set-up, tokens and the audit go to the first target: every node of one deployment
    // answers them alike.
    let target = targets[0].clone();
    let timeout = Duration::from_secs_f64(args.timeout);
    let api = Arc::new(Api { addr: target.addr, requests: requests[0].clone(), timeout });
    let mut conn = ApiConn::new(api.clone());
    let scenario = args.scenario;
    if !safe_id(&args.event) {
        return Err(LoadError::Usage(format!("--event {:?} is not an event id", args.event)));
    }
    if !args.path.starts_with('/') {
        return Err(LoadError::Usage(format!("--path {:?} must start with /", args.path)));
    }
    let bare = uri(&args.path).map_err(|e| LoadError::Usage(format!("--path: {e}")))?;
    if args.pipeline > 1 && (scenario != Scenario::Bare || args.rate.is_some()) {
        return Err(LoadError::Usage(
            "--pipeline applies to the bare scenario in the closed model (without --rate) only".into(),
        ));
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mix =
        args.mix.unwrap_or(if scenario == Scenario::HotSeats { Mix::HoldCheckout } else { Mix::HoldRelease });
    let mut labels = Vec::new();
    let mut dist = SeatDist::Uniform(1);
    let mut hold_bodies = Vec::new();
    let mut run_prefix = String::new();
    let mut users = Vec::new();
    match scenario {
        Scenario::Bare => {
            let reply = conn.get(&args.path, None).await.map_err(|e| {
                LoadError::Setup(format!("cannot reach the server at {}: {e}. Is it running?", target.url))
            })?;
            if !(200..400).contains(&reply.status) {
                eprintln!(
                    "warning: GET {} answers {}; every request will count as an error",
                    args.path, reply.status
                );
            }
        }
        Scenario::Browse => {
            wait_ready(&mut conn, &target).await?;
            load_event(&mut conn, &target, &args.event, false).await?;
        }
        Scenario::Holds | Scenario::HotSeats => {
            wait_ready(&mut conn, &target).await?;
            labels = load_event(&mut conn, &target, &args.event, true).await?;
            let n = labels.len() as u32;
            let in_play = if scenario == Scenario::HotSeats { args.seats.min(n) } else { n };
            dist = match args.zipf {
                Some(s) => SeatDist::Zipf(
                    Zipf::new(in_play, s).map_err(|e| LoadError::Usage(format!("--zipf: {e}")))?,
                ),
                None => SeatDist::Uniform(in_play),
            };
            hold_bodies = labels[..in_play as usize]
                .iter()
                .map(|label| Bytes::from(serde_json::json!({"seats": [label]}).to_string()))
                .collect();
            // With at most 7 seats per user, a user who bought all of theirs can still ask
            // for an 8th and gets 409 (sold), not 422 (the per-user limit of 8).
            let seats_per_user = 7;
            let needed = n.div_ceil(seats_per_user).max(1);
            let user_count = args.users.unwrap_or(match (scenario, mix) {
                (Scenario::Holds, Mix::HoldCheckout) => needed,
                _ => 1000,
            });
            if scenario == Scenario::Holds && mix == Mix::HoldCheckout && user_count < needed {
                eprintln!(
                    "warning: {user_count} users for {n} seats: buyers may reach the limit of 8 seats per user \
                     (422 HOLD_LIMIT); --users {needed} avoids it"
                );
            }
            let prefix = user_prefix(args, &mut rng)?;
            let names: Vec<String> = (0..user_count).map(|i| format!("{prefix}{i}")).collect();
            users = mint_tokens(&api, &names).await?;
            run_prefix = prefix;
        }
        Scenario::Onsale | Scenario::Viewers => {
            return Err(LoadError::Internal(format!("scenario {} has its own runner", scenario.name())));
        }
    }
    let event = &args.event;
    let path = |p: String| uri(&p).map_err(|e| LoadError::Usage(e.to_string()));
    let uris = Uris {
        hold: path(format!("/v1/events/{event}/holds"))?,
        event: path(format!("/v1/events/{event}"))?,
        seats: path(format!("/v1/events/{event}/seats"))?,
        availability: path(format!("/v1/events/{event}/availability"))?,
        bare,
    };
    let ops = match scenario {
        Scenario::Holds | Scenario::HotSeats => {
            vec!["hold", if mix == Mix::HoldRelease { "release" } else { "checkout" }]
        }
        Scenario::Browse => vec!["event", "seats", "availability"],
        _ => vec!["get"],
    };
    let audited = matches!(scenario, Scenario::Holds | Scenario::HotSeats) && !args.no_audit;
    // The other nodes must be up and know the event before the clock starts.
    for (other, other_requests) in targets.iter().zip(&requests).skip(1) {
        let api = Arc::new(Api { addr: other.addr, requests: other_requests.clone(), timeout });
        let mut conn = ApiConn::new(api);
        if scenario != Scenario::Bare {
            wait_ready(&mut conn, other).await?;
            load_event(&mut conn, other, &args.event, false).await?;
        }
    }
    let plan = Plan {
        scenario,
        mix,
        targets,
        requests,
        timeout,
        connections: args.connections,
        threads: args.threads.min(args.connections),
        rate: args.rate,
        pipeline: args.pipeline,
        duration: Duration::from_secs_f64(args.duration),
        cap: args.requests,
        issued: AtomicU64::new(0),
        event: args.event.clone(),
        labels,
        hold_bodies,
        dist,
        users,
        user_prefix: run_prefix,
        user_by_seat: scenario == Scenario::Holds,
        uris,
        ops,
        seed,
        checkout_body: Bytes::from_static(br#"{"payment":{"method":"card","token":"tok_visa"}}"#),
        audited,
    };
    Ok((api, plan))
}
