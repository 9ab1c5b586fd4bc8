//! The boxoffice server: configuration, start-up and recovery, the HTTP API and the
//! background workers.
//!
//! Layout: [`config`] (one `Config` from flags and `BOXOFFICE_*`), [`Application`]
//! (build = open the data dir, store and inventory and bind; run = recover, seed, serve
//! until shutdown), [`http`] (one module per resource, each with a `router()`),
//! [`auth`] (JWT), [`catalog`] (in-process event cache), [`checkout`] (hold -> order),
//! [`payments`] (gateways; [`stripe`] is the Stripe adapter), [`refunds`], [`tickets`]
//! (signed QR payloads), [`stream`]
//! (the ticket stream), [`mail`] (ticket mail), [`workers`] (expiry sweeper, reconciler,
//! outbox relay, ticket worker, key purge), [`demo`] (demo data), [`search`] (the event
//! search index, fed from the catalog's change feed).
//! [`waiting_room`] is the virtual waiting room in front of queued onsales; rate limits and
//! load shedding are in [`http::guard`].

pub mod admin_client;
pub mod allocations;
pub mod audit;
pub mod auth;
pub mod backends;
pub mod cancellation;
pub mod catalog;
pub mod checkout;
pub mod config;
pub mod demo;
pub mod error;
pub mod extract;
pub mod fault;
pub mod http;
pub mod live;
pub mod mail;
pub mod payments;
pub mod rebuild;
pub mod refunds;
pub mod search;
pub mod stream;
pub mod stripe;
pub mod tickets;
pub mod waiting_room;
pub mod waitlist;
pub mod webhooks;
pub mod workers;

use std::fs::File;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use boxoffice_core::Limits;
use boxoffice_engine::memory::MemoryInventory;
use boxoffice_engine::{Inventory, SoldSeat, SystemClock};
use boxoffice_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub use config::Config;

/// Shared state of every handler and worker; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    pub limits: Limits,
    pub store: Arc<dyn Store>,
    pub inventory: Arc<dyn Inventory>,
    /// The embedded inventory (`None` in distributed mode, where it is in Redis).
    pub memory: Option<Arc<MemoryInventory>>,
    /// Writes the hold-side audit records from the inventory's change history.
    pub audit: audit::AuditWriter,
    pub catalog: catalog::Catalog,
    /// Event search (`GET /v1/search`), kept current by [`search::SearchFeed`].
    pub search: Arc<dyn boxoffice_search::SearchIndex>,
    pub live: live::LiveHub,
    pub auth: auth::Auth,
    pub gateway: Arc<dyn payments::PaymentGateway>,
    /// Signs ticket QR payloads at the order commit and verifies them at the door.
    pub signer: tickets::TicketSigner,
    /// The ticket stream the outbox relay publishes to.
    pub stream: Arc<dyn stream::TicketStream>,
    /// Wakes the cancellation job after an event was cancelled.
    pub cancellation_wake: tokio::sync::Notify,
    /// Wakes the outbox relay after a commit wrote outbox rows.
    pub outbox_wake: tokio::sync::Notify,
    /// The waiting room of every queued event.
    pub waiting_room: Arc<dyn waiting_room::WaitingRoom>,
    /// Signs and checks admission tokens.
    pub admission: waiting_room::token::AdmissionKeys,
    /// The sold-out waitlists' index and matcher state.
    pub waitlists: waitlist::Waitlists,
    /// The waiting room's time (the system clock but in tests).
    pub queue_clock: Arc<dyn boxoffice_engine::Clock>,
    /// Rate limits and load shedding.
    pub guard: http::guard::Guard,
    pub ready: AtomicBool,
    /// The last backend checks of `/readyz`.
    pub backend_checks: http::health::BackendCheckCache,
    /// Start-up generation: part of availability ETags and stream ids, so that a client
    /// never mistakes a version of a previous run for one of this run.
    pub epoch: u64,
    pub metrics: PrometheusHandle,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data dir {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error(
        "another boxoffice server is using data dir {0}; stop it, or use its admin API, or pick another --data-dir"
    )]
    Locked(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("store: {0}")]
    Store(#[from] boxoffice_store::StoreError),
    #[error("inventory: {0}")]
    Inventory(#[from] boxoffice_engine::InventoryError),
    #[error("search index: {0}")]
    Search(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("audit history: {0}")]
    Audit(String),
    #[error("{0}")]
    Backend(String),
    #[error("ticket stream: {0}")]
    Stream(#[from] stream::StreamError),
}

/// Creates the data dir if needed and takes its lock (`<data-dir>/LOCK`), which the
/// returned file holds until it is dropped: one process uses a data dir at a time.
pub fn lock_data_dir(dir: &Path) -> Result<File, StartError> {
    let io = |source| StartError::DataDir { dir: dir.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let lock = File::create(dir.join("LOCK")).map_err(io)?;
    if lock.try_lock().is_err() {
        return Err(StartError::Locked(dir.display().to_string()));
    }
    Ok(lock)
}

/// A server bound to its port, not yet serving.
pub struct Application {
    state: AppState,
    listener: TcpListener,
    _lock: File,
}

impl Application {
    /// Opens the data dir (locked against a second server), the store and the inventory,
    /// and binds the listener.
    pub async fn build(config: Config) -> Result<Application, StartError> {
        Self::build_with_queue_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with the waiting room running on `queue_clock` (tests).
    pub async fn build_with_queue_clock(
        config: Config,
        queue_clock: Arc<dyn boxoffice_engine::Clock>,
    ) -> Result<Application, StartError> {
        let dir = config.data_dir.clone();
        let io = |source| StartError::DataDir { dir: dir.display().to_string(), source };
        let lock = lock_data_dir(&dir)?;
        fault::init().map_err(StartError::Config)?;
        config.check_backends().map_err(StartError::Config)?;
        let store = backends::open_store(&config, &dir).await?;
        let secret = match &config.jwt_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => backends::shared_key(&config, store.as_ref(), &dir, "jwt_secret").await?.to_vec(),
        };
        let admission_secret =
            backends::shared_key(&config, store.as_ref(), &dir, "admission_secret").await?;
        let search_index = search::open_index(&dir)?;
        let (inventory, memory) = backends::open_inventory(&config, &dir).await?;
        let (waiting_room, guard) = backends::open_onsale(&config).await?;
        let epoch = backends::epoch(&config, store.as_ref()).await?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| StartError::Bind { addr: config.addr, source })?;
        let gateway: Arc<dyn payments::PaymentGateway> = match config.payment_gateway.as_str() {
            "stripe" => Arc::new(stripe::StripeGateway::from_config(&config).map_err(StartError::Config)?),
            _ => Arc::new(
                payments::SimulatedGateway::open(
                    &dir,
                    config.payment_latency_ms,
                    config.payment_failure_rate,
                    config.journal_sync != "write",
                )
                .map_err(io)?,
            ),
        };
        let signer = if config.database_url.is_some() {
            tickets::TicketSigner::from_seed(
                backends::shared_key(&config, store.as_ref(), &dir, tickets::SIGNING_KEY_FILE).await?,
            )
        } else {
            tickets::TicketSigner::load_or_create(&dir).map_err(io)?
        };
        let ticket_stream = config.stream.open(config.database_url.as_deref()).await?;
        let state = AppState(Arc::new(Shared {
            limits: config.limits(),
            audit: audit::AuditWriter::new(inventory.clone(), store.clone(), memory.is_none()),
            store,
            inventory,
            memory,
            catalog: catalog::Catalog::default(),
            search: Arc::new(search_index),
            live: live::LiveHub::default(),
            auth: auth::Auth::new(&secret),
            gateway,
            signer,
            stream: ticket_stream,
            outbox_wake: tokio::sync::Notify::new(),
            cancellation_wake: tokio::sync::Notify::new(),
            waiting_room,
            admission: waiting_room::token::AdmissionKeys::new(&admission_secret),
            waitlists: waitlist::Waitlists::default(),
            queue_clock,
            guard,
            ready: AtomicBool::new(false),
            backend_checks: Default::default(),
            epoch,
            metrics: http::metrics::handle(),
            config,
        }));
        Ok(Application { state, listener, _lock: lock })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Recovers, seeds the demo if asked, then serves until `shutdown` completes; in-flight
    /// requests finish and the journal is flushed before it returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let state = self.state.clone();
        let app = http::router(state.clone());
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
        let startup = tokio::spawn(start_up(state.clone(), workers_stopped));
        // Answers are small and latency matters: no Nagle delay.
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        let _ = stop_workers.send(true);
        startup.abort();
        if let Some(memory) = &state.memory {
            if let Err(e) = memory.flush().await {
                tracing::error!(error = %e, "journal flush at shutdown failed");
            }
            memory.close();
        }
        state.search.close().await;
        tracing::info!("stopped");
        served
    }
}

/// Loads every event into the inventory (sold seats from the store, holds from the
/// journal), seeds the demo, commits recovery, reconciles open checkouts, starts the
/// workers, then says ready.
async fn start_up(state: AppState, stop: tokio::sync::watch::Receiver<bool>) {
    let mut search_feed = search::SearchFeed::default();
    let result: Result<(), StartError> = async {
        for id in state.store.all_event_ids().await? {
            load_event(&state, id).await?;
        }
        if state.config.demo {
            demo::seed(&state).await?;
        }
        if let Some(memory) = &state.memory {
            memory.commit_recovery().await?;
        }
        // Checkouts the previous process left open are settled before anyone can act on
        // their holds; the stream is re-driven past what the ticket worker handled.
        // With a shared inventory other nodes' checkouts are alive: only pins past their
        // deadline are ownerless.
        let mode = if state.memory.is_some() {
            workers::ReconcileMode::StartUp
        } else {
            workers::ReconcileMode::Periodic
        };
        match workers::reconcile(&state, mode).await {
            Ok(done) if !done.0.is_empty() => tracing::warn!(fixed = ?done.0, "start-up reconciliation"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "start-up reconciliation failed; the next pass retries"),
        }
        // The audit history catches up with the recovered inventory and closes what the
        // restart ended. (A shared inventory loses nothing when a node restarts.)
        if state.config.writes_audit() {
            let written = state.audit.drain_all().await.map_err(StartError::Audit)?;
            let mut settled = 0;
            if state.memory.is_some() {
                for event in state.store.all_event_ids().await? {
                    let now = workers::now_ms();
                    settled +=
                        state.audit.settle_after_restart(event, now).await.map_err(StartError::Audit)?;
                }
            }
            if written + settled > 0 {
                tracing::info!(written, settled, "audit history caught up after start-up");
            }
        }
        if let Err(e) = workers::redrive_stream(&state).await {
            tracing::error!(error = %e, "cannot re-drive the ticket stream");
        }
        // Searchable from the first request: the demo and every change made while the
        // server was down are in the index before it says ready.
        if let Err(e) = search_feed.catch_up(&state).await {
            tracing::error!(error = %e, "search index catch-up failed; its worker retries");
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            search::spawn_worker(state.clone(), stop.clone(), search_feed);
            workers::spawn_all(state.clone(), stop);
            state.ready.store(true, Ordering::Release);
            tracing::info!("ready");
        }
        Err(e) => {
            tracing::error!(error = %e, "start-up failed; the server stays not ready");
        }
    }
}

/// Makes an event known to the inventory with its sold seats from the store.
pub async fn load_event(state: &AppState, id: boxoffice_core::EventId) -> Result<(), StartError> {
    if state.memory.is_none() {
        // Shared inventory: its state is built from the store once, under a lock, with
        // pins and a new epoch (see `rebuild`), whether it is new or was lost.
        return rebuild::ensure_event(state, id, rebuild::LOAD_WAIT).await;
    }
    let map = state.store.event_seat_map(id).await?;
    let sold = state
        .store
        .sold_seats(id)
        .await?
        .into_iter()
        .map(|s| SoldSeat { seat_index: s.seat_index, user: s.user })
        .collect();
    state.inventory.load_event(id, map, sold).await?;
    Ok(())
}
