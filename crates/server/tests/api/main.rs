//! HTTP API tests: each test starts the app on port 0 with a fresh data dir and talks to
//! it over real HTTP. One test binary; modules by resource.

mod helpers;
