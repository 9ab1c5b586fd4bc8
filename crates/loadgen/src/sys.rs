//! What the operating system allows and measures: the limit of open files (raised to its
//! hard maximum at start, since every viewer is a socket) and the resident memory of a
//! local server process, read from `/proc/<pid>/status`; the generator's own CPU time.

/// The soft and hard limit of open files after raising the soft one as far as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    pub soft: u64,
    pub hard: u64,
    /// The soft limit before.
    pub before: u64,
}

/// Raises `RLIMIT_NOFILE`'s soft limit to the hard one.
pub fn raise_file_limit() -> std::io::Result<FileLimit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(FileLimit { soft: limit.rlim_cur, hard: limit.rlim_max, before })
}

/// CPU time (user + system) this process has used so far, all threads, in seconds.
pub fn process_cpu_seconds() -> Option<f64> {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// Resident set size of a process in bytes (`VmRSS`), `None` when it cannot be read.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&status, "VmRSS:").map(|kib| kib * 1024)
}

fn kib_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// A process's soft limit of open files (`Max open files` in `/proc/<pid>/limits`).
pub fn open_file_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_figures_are_readable() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).is_some_and(|b| b > 0));
        let limit = raise_file_limit().expect("getrlimit works");
        assert!(limit.soft >= limit.before && limit.soft <= limit.hard);
        assert_eq!(open_file_limit(pid), Some(limit.soft));
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = process_cpu_seconds().expect("getrusage works");
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = process_cpu_seconds().expect("getrusage works");
        assert!(after > before, "{before} -> {after}");
    }

    #[test]
    fn status_fields_parse() {
        assert_eq!(kib_field("Name:\tx\nVmRSS:\t  12345 kB\n", "VmRSS:"), Some(12345));
        assert_eq!(kib_field("Name:\tx\n", "VmRSS:"), None);
    }
}
