//! HTTP API tests: each test starts the app on port 0 with a fresh data dir and talks to
//! it over real HTTP. One test binary; modules by resource.

mod allocations;
mod audit;
mod availability;
mod cancellation;
mod catalog;
mod checkout;
mod cluster;
mod contention;
mod crash;
mod distributed;
mod errors;
mod faults;
mod helpers;
mod holds;
mod live;
mod operations;
mod orphan_rule;
mod payments;
mod queue;
mod redis_loss;
mod scale_out;
mod search;
mod services;
mod stats;
mod stripe;
mod ticket_transfers;
mod tickets;
mod waiting_room;
mod waitlist;
mod web;
mod webhooks;
