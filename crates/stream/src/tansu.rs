//! A local Kafka-protocol broker (`tansu`, in-memory storage) on a free port, for the
//! tests and benchmarks of the Kafka backend: `scripts/install-tansu.sh` installs it.

use std::time::Duration;

/// The Kafka-protocol broker binary (`tansu`): `$BOXOFFICE_TANSU`, else where
/// `scripts/install-tansu.sh` puts it, else on the PATH.
pub fn tansu_binary() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("BOXOFFICE_TANSU") {
        return Some(path.into());
    }
    let cached = std::path::Path::new(&std::env::var_os("HOME")?).join(".cache/boxoffice/tools/bin/tansu");
    if cached.is_file() {
        return Some(cached);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join("tansu"))
        .find(|p| p.is_file())
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// A Kafka-protocol broker of one test: `tansu broker` with in-memory storage on a free
/// port, killed when dropped.
pub struct Broker {
    child: std::process::Child,
    pub address: String,
}

impl Broker {
    /// Starts a broker and waits until it listens.
    ///
    /// # Panics
    /// When tansu is not installed or does not start: this is for tests.
    pub fn start() -> Broker {
        let binary = tansu_binary().expect(
            "the Kafka tests need the tansu broker: run scripts/install-tansu.sh (or set BOXOFFICE_TANSU)",
        );
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(&binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let broker = Broker { child, address: format!("127.0.0.1:{port}") };
        for _ in 0..200 {
            if std::net::TcpStream::connect(&broker.address).is_ok() {
                return broker;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tansu did not listen on {} within 10 s", broker.address);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
