//! HTTP API tests: each test starts the app on port 0 with a fresh data dir and talks to
//! it over real HTTP. One test binary; modules by resource.

mod availability;
mod catalog;
mod checkout;
mod contention;
mod crash;
mod errors;
mod helpers;
mod holds;
mod live;
mod payments;
mod queue;
mod search;
mod stats;
mod tickets;
mod web;
