//! A server process's own accounting, from `/proc/<pid>` (Linux): CPU time (utime + stime),
//! resident memory and thread count. Read by the load tester, so the load generator's CPU
//! never counts towards the server's.

use std::fs;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// One reading.
#[derive(Clone, Debug)]
pub struct ProcSample {
    /// The process.
    pub pid: u32,
    /// utime + stime, seconds (10 ms resolution).
    pub cpu_seconds: f64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// Entries of `/proc/<pid>/task`.
    pub threads: usize,
}

impl ProcSample {
    /// Reads `pid`'s figures; `None` if it does not exist (or this is not Linux).
    pub fn read(pid: u32) -> Option<ProcSample> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is fields[0], so field n is fields[n - 3]: utime 14, stime 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let threads = fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        Some(ProcSample {
            pid,
            cpu_seconds: (utime + stime) as f64 / USER_HZ,
            rss_kib,
            threads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let s = ProcSample::read(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(s.threads >= 1);
        assert!(ProcSample::read(u32::MAX).is_none());
    }
}
