//! CPU time of the shared services, PostgreSQL and Redis, over a cell: the
//! work a deployment hands to them is part of its cost per operation.
//!
//! Both are found on this machine by their processes, not through the URLs
//! the bench was given: PostgreSQL's postmaster from
//! `/var/run/postgresql/*.pid` (else the `postgres` process whose parent is
//! not one), Redis by the name `redis-server`. A process tree's CPU is the
//! root's user + system time, plus what its exited children left in the
//! root's `cutime`/`cstime` (PostgreSQL backends come and go with
//! connections; Redis forks to save), plus its live descendants' own.

use crate::support::{process_tree, ticks_per_s};

/// CPU milliseconds per operation spent by each service over one cell;
/// `None` when the service was not found on this machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceCpu {
    pub postgres_ms: Option<f64>,
    pub redis_ms: Option<f64>,
}

pub struct ServiceMeter {
    ticks_per_s: f64,
    postgres: Option<u32>,
    redis: Vec<u32>,
    postgres_secs: f64,
    redis_secs: f64,
}

impl ServiceMeter {
    /// Finds the services and starts counting.
    pub fn start() -> Self {
        let ticks_per_s = ticks_per_s();
        let mut meter = ServiceMeter {
            ticks_per_s,
            postgres: postmaster(),
            redis: redis_servers(),
            postgres_secs: 0.0,
            redis_secs: 0.0,
        };
        meter.reset();
        meter
    }

    /// What was found, for the run's header.
    pub fn describe(&self) -> String {
        let postgres = match self.postgres {
            Some(pid) => format!("PostgreSQL postmaster pid {pid}"),
            None => "no PostgreSQL server process found".into(),
        };
        let redis = if self.redis.is_empty() {
            "no redis-server process found".to_string()
        } else {
            format!("redis-server pid {:?}", self.redis)
        };
        format!("{postgres}, {redis}")
    }

    fn postgres_now(&self) -> f64 {
        self.postgres.map(|pid| tree_secs(pid, self.ticks_per_s)).unwrap_or(f64::NAN)
    }

    fn redis_now(&self) -> f64 {
        self.redis.iter().map(|&pid| tree_secs(pid, self.ticks_per_s)).sum()
    }

    /// Starts counting from now.
    pub fn reset(&mut self) {
        self.postgres_secs = self.postgres_now();
        self.redis_secs = self.redis_now();
    }

    /// The CPU spent since the last reset, per operation.
    pub fn charge(&mut self, ops: usize) -> ServiceCpu {
        let ops = ops.max(1) as f64;
        let (postgres, redis) = (self.postgres_now(), self.redis_now());
        let out = ServiceCpu {
            postgres_ms: self.postgres.map(|_| (postgres - self.postgres_secs) * 1000.0 / ops),
            redis_ms: (!self.redis.is_empty()).then(|| (redis - self.redis_secs) * 1000.0 / ops),
        };
        self.postgres_secs = postgres;
        self.redis_secs = redis;
        out
    }
}

/// The postmaster: the pid file's first line, checked against /proc; else
/// the `postgres` process whose parent is not a `postgres` process.
fn postmaster() -> Option<u32> {
    let from_file = std::fs::read_dir("/var/run/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pid"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| text.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        .find(|&pid| comm(pid).as_deref() == Some("postgres"));
    from_file.or_else(|| {
        processes().into_iter().find(|&pid| {
            comm(pid).as_deref() == Some("postgres") && parent(pid).and_then(comm).as_deref() != Some("postgres")
        })
    })
}

fn redis_servers() -> Vec<u32> {
    processes().into_iter().filter(|&pid| comm(pid).as_deref() == Some("redis-server")).collect()
}

fn processes() -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    pids.sort_unstable();
    pids
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim().to_string())
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in
/// parentheses and may hold spaces): index 0 is the state (field 3).
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace().map(str::to_string).collect()
}

fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid).get(1).and_then(|p| p.parse().ok())
}

/// utime + stime (fields 14, 15) and, when `waited`, cutime + cstime (16,
/// 17), in clock ticks; a process gone meanwhile counts for nothing.
fn ticks(pid: u32, waited: bool) -> f64 {
    let fields = stat_fields(pid);
    let at = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let own = at(11) + at(12);
    if waited { own + at(13) + at(14) } else { own }
}

/// The CPU seconds of `root`'s process tree (see the module comment).
fn tree_secs(root: u32, ticks_per_s: f64) -> f64 {
    let descendants: f64 = process_tree(root).into_iter().filter(|&p| p != root).map(|p| ticks(p, false)).sum();
    (ticks(root, true) + descendants) / ticks_per_s
}
