//! The server under test: a plain `http://HOST[:PORT]` base URL, resolved once to a socket
//! address. Only loopback addresses are accepted unless the caller explicitly allows
//! remote targets, so that a mistyped URL never turns the load generator on someone
//! else's machine.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::LoadError;

/// Where requests go and what their `Host` header says.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    /// The resolved address connections are opened to.
    pub addr: SocketAddr,
    /// The `Host` header value (`host:port`).
    pub host: String,
}

/// Parses `http://HOST[:PORT][/]` and resolves it; refuses non-loopback addresses unless
/// `allow_remote`.
pub fn parse_target(url: &str, allow_remote: bool) -> Result<Target, LoadError> {
    let bad = |why: &str| LoadError::Usage(format!("--target {url:?}: {why}"));
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        return Err(bad("https is not supported: the load generator speaks plain HTTP/1.1"));
    } else {
        return Err(bad("expected a base URL like http://127.0.0.1:8080"));
    };
    let authority = match rest.split_once('/') {
        None => rest,
        Some((authority, "")) => authority,
        Some(_) => {
            return Err(bad("give the server's base URL without a path (the bare scenario takes --path)"));
        }
    };
    if authority.is_empty() || authority.contains('@') || authority.contains('?') || authority.contains('#') {
        return Err(bad("expected http://HOST[:PORT]"));
    }
    // `host:port`, `[v6]:port`, or a host alone (port 80).
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let with_port = if has_port { authority.to_owned() } else { format!("{authority}:80") };
    let addrs: Vec<SocketAddr> =
        with_port.to_socket_addrs().map_err(|e| bad(&format!("cannot resolve {authority}: {e}")))?.collect();
    let Some(&first) = addrs.first() else {
        return Err(bad(&format!("{authority} resolves to no address")));
    };
    if !allow_remote && let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(LoadError::Usage(format!(
            "refusing to load {url}: {} is not a loopback address. The load generator only targets this \
             machine (127.0.0.0/8, ::1) unless --allow-remote is given, and then only servers you run.",
            remote.ip()
        )));
    }
    // Prefer an IPv4 loopback address when a name resolves to both families.
    let addr = addrs.iter().copied().find(SocketAddr::is_ipv4).unwrap_or(first);
    Ok(Target { url: url.trim_end_matches('/').to_owned(), addr, host: authority.to_owned() })
}

/// Targets at most one run spreads its connections over.
pub const MAX_TARGETS: usize = 64;

/// Parses `--target`: one base URL, or several separated by commas (the nodes of one
/// deployment, which the run spreads its connections over in turn). Each is checked as
/// [`parse_target`] checks one; a URL named twice is refused.
pub fn parse_targets(list: &str, allow_remote: bool) -> Result<Vec<Target>, LoadError> {
    let mut targets: Vec<Target> = Vec::new();
    for url in list.split(',').map(str::trim) {
        if url.is_empty() {
            return Err(LoadError::Usage(format!("--target {list:?}: an empty URL in the list")));
        }
        let target = parse_target(url, allow_remote)?;
        if targets.iter().any(|t| t.addr == target.addr) {
            return Err(LoadError::Usage(format!("--target {list:?}: {url} is named twice")));
        }
        targets.push(target);
    }
    if targets.len() > MAX_TARGETS {
        return Err(LoadError::Usage(format!(
            "--target names {} servers; at most {MAX_TARGETS}",
            targets.len()
        )));
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_parse() {
        let t = parse_target("http://127.0.0.1:8080", false).expect("loopback");
        assert_eq!(t.addr, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(t.host, "127.0.0.1:8080");
        let t = parse_target("http://[::1]:9000/", false).expect("v6 loopback");
        assert_eq!(t.addr.port(), 9000);
        assert!(parse_target("http://localhost:1234", false).is_ok());
        assert_eq!(parse_target("http://127.0.0.2", false).expect("port 80").addr.port(), 80);
    }

    #[test]
    fn remote_targets_are_refused_unless_allowed() {
        let err = parse_target("http://192.0.2.1:80", false).expect_err("remote").to_string();
        assert!(err.contains("not a loopback address"), "{err}");
        assert!(parse_target("http://192.0.2.1:80", true).is_ok());
    }

    #[test]
    fn several_targets_parse_in_order_and_repeats_are_refused() {
        let t = parse_targets("http://127.0.0.1:8081, http://127.0.0.1:8082/", false).expect("two");
        assert_eq!(t.iter().map(|t| t.addr.port()).collect::<Vec<_>>(), vec![8081, 8082]);
        assert_eq!(parse_targets("http://127.0.0.1:8081", false).expect("one").len(), 1);
        for list in [
            "http://127.0.0.1:1,http://127.0.0.1:1",
            "http://127.0.0.1:1,",
            "http://127.0.0.1:1,http://192.0.2.1:80",
        ] {
            assert!(parse_targets(list, false).is_err(), "{list}");
        }
        let many: Vec<String> =
            (0..=MAX_TARGETS).map(|i| format!("http://127.0.0.1:{}", 10_000 + i)).collect();
        assert!(parse_targets(&many.join(","), false).is_err());
    }

    #[test]
    fn malformed_targets_are_refused() {
        for url in
            ["https://127.0.0.1:1", "127.0.0.1:8080", "http://127.0.0.1:1/v1", "http://", "http://a@b:1"]
        {
            assert!(parse_target(url, false).is_err(), "{url}");
        }
    }
}
