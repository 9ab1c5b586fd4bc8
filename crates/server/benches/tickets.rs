//! Offline verification of ticket payloads: what a door scanner without a connection does
//! per scan, with only the public key and the event's revocation list (10,000 entries).
//!
//! - `offline_verify/rotating`: a rotating payload (two Ed25519 verifications: the
//!   certificate with the server key, the step with the ticket key) plus the window and
//!   revocation checks: `OfflineScanner::scan`;
//! - `offline_verify/static`: a static payload (one verification), for comparison;
//! - `sign/rotating_payload`: what the server does per `GET /v1/tickets/{id}/live`.
//!
//! Run: `cargo bench -p boxoffice-server --bench tickets -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use boxoffice_core::{EventId, TicketId};
use boxoffice_server::tickets::{
    OfflineScanner, OfflineVerdict, SignedTicket, TicketSigner, TicketVerifier, time_step,
};
use criterion::{Criterion, criterion_group, criterion_main};

/// Revoked ticket revisions on the scanner's list.
const REVOKED: usize = 10_000;
const NOW_MS: u64 = 1_800_000_007_000;

fn offline_verify(c: &mut Criterion) {
    let signer = TicketSigner::from_seed([42; 32]);
    let verifier = TicketVerifier::from_public_key_hex(&signer.public_key_hex()).expect("a valid public key");
    let event = EventId(7);
    let mut scanner = OfflineScanner::new(verifier, event, true);
    for _ in 0..REVOKED {
        scanner.revoke(TicketId::random(), 1);
    }
    let ticket = SignedTicket { ticket: TicketId::random(), event, seat_index: 41_234, revision: 2 };
    let rotating = signer.rotating_payload(&ticket, time_step(NOW_MS));
    let printed = signer.payload(&ticket.ticket, event, ticket.seat_index, ticket.revision);
    assert_eq!(scanner.scan(&rotating, NOW_MS), OfflineVerdict::Admit(ticket.clone()));
    assert_eq!(scanner.scan(&printed, NOW_MS), OfflineVerdict::Admit(ticket.clone()));

    let mut group = c.benchmark_group("offline_verify");
    group.bench_function("rotating", |b| b.iter(|| black_box(scanner.scan(black_box(&rotating), NOW_MS))));
    group.bench_function("static", |b| b.iter(|| black_box(scanner.scan(black_box(&printed), NOW_MS))));
    group.finish();
    c.bench_function("sign/rotating_payload", |b| {
        b.iter(|| black_box(signer.rotating_payload(black_box(&ticket), time_step(NOW_MS))))
    });
}

criterion_group!(benches, offline_verify);
criterion_main!(benches);
