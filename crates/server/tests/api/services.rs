//! The real services tests run against: the machine's PostgreSQL (a fresh database per
//! test, dropped afterwards) and Redis, and private `redis-server` processes for tests
//! that stop Redis (never the machine's shared one).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The PostgreSQL server of the tests, without a database name.
pub fn postgres_server() -> String {
    std::env::var("BOXOFFICE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The shared Redis of the tests; each test keeps to a key prefix of its own.
pub fn redis_url() -> String {
    std::env::var("BOXOFFICE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A database created for one test, dropped (connections and all) when this is dropped.
pub struct FreshDatabase {
    pub name: String,
}

impl FreshDatabase {
    pub async fn create() -> FreshDatabase {
        let id: u64 = rand::random();
        let name = format!("bo_t_{id:016x}");
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", postgres_server()))
            .await
            .unwrap_or_else(|e| panic!("these tests need PostgreSQL at {}: {e}", postgres_server()));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        admin.close().await.unwrap();
        FreshDatabase { name }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", postgres_server(), self.name)
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Its own thread and runtime: this may run during a panic, or inside a runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) =
                    sqlx::PgConnection::connect(&format!("{}/postgres", postgres_server())).await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A `redis-server` of one test on a free loopback port, without persistence: killing it
/// loses everything, as a crashed Redis without AOF would.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { port, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("these tests need redis-server on the PATH");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        for _ in 0..250 {
            if pong(addr).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on port {} did not answer", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn pong(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else { return false };
    if tcp.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    tcp.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n"
}
