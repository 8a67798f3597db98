//! The tables of issue 18's targets: the embedded path against the in-memory
//! anchor per second of CPU, the scale-out path against node with Redis at
//! equal p99, the total CPU per operation with PostgreSQL and Redis counted,
//! and the RS256 round trip as a share of its physical limit.

use crate::report::{Report, equal_p99_row, ms, pass};
use crate::{Kind, Scenario, TargetRun};

/// The embedded path against the in-memory anchor, in operations per second
/// of server CPU.
const TARGET_EMBEDDED: f64 = 3.0;
/// The clients of the embedded comparison.
const EMBEDDED_CLIENTS: usize = 8;
/// Two coop-idp instances against node with Redis and workers, at equal p99.
const TARGET_SCALE_OUT: f64 = 2.0;

impl Report<'_> {
    pub fn issue_18(&self, md: &mut String) {
        let of = |kind: Kind| self.runs.iter().find(|r| r.kind == kind);
        let (sqlite, pair) = (of(Kind::Sqlite), of(Kind::Pair));
        let (node_redis, node_memory) = (of(Kind::NodeRedis), of(Kind::NodeMemory));
        match (sqlite, node_memory) {
            (Some(ours), Some(anchor)) => embedded(md, ours, anchor),
            _ => md.push_str(
                "Embedded path against the in-memory anchor: not measured (needs `sqlite` and `memory`).\n\n",
            ),
        }
        match (pair, node_redis) {
            (Some(ours), Some(theirs)) => scale_out(md, ours, theirs),
            _ => md.push_str("Scale-out path against node with Redis: not measured (needs `pair` and `node`).\n\n"),
        }
        self.total_cpu(md);
        self.rs256_limit(md);
    }

    /// Every process involved, per operation: the servers, PostgreSQL, Redis.
    fn total_cpu(&self, md: &mut String) {
        md.push_str(
            "Total CPU per operation, every process involved: the server processes (coop-idp's instances, or \
             node's primary and workers), the PostgreSQL server (the postmaster and all its backends) and \
             redis-server, each measured as its user + system time over the cell. PostgreSQL and Redis are \
             shared services: whatever else used them during the cell (other sessions, tests, background jobs) \
             is counted too, so a deployment that does not use one shows that background noise in its column.\n\n",
        );
        for scenario in Scenario::ALL {
            md.push_str(&format!("{}:\n\n", scenario.label()));
            md.push_str(
                "| Clients | Deployment | ops/s | Server CPU/op | PostgreSQL CPU/op | Redis CPU/op | Total CPU/op |\n\
                 |---:|---|---:|---:|---:|---:|---:|\n",
            );
            for &clients in &self.settings.clients {
                for r in self.runs {
                    let Some(c) = r.full_cell(scenario, clients) else { continue };
                    let service =
                        |v: Option<f64>| v.map(|v| format!("{v:.3} ms")).unwrap_or_else(|| "not found".into());
                    let total =
                        c.m.server_cpu_ms + c.services.postgres_ms.unwrap_or(0.0) + c.services.redis_ms.unwrap_or(0.0);
                    md.push_str(&format!(
                        "| {clients} | {} | {:.0} | {:.3} ms | {} | {} | {total:.3} ms |\n",
                        r.name,
                        c.m.ops_per_s,
                        c.m.server_cpu_ms,
                        service(c.services.postgres_ms),
                        service(c.services.redis_ms),
                    ));
                }
            }
            md.push('\n');
        }
    }

    /// The RS256 round trip signs one ID token: cores ÷ one signature bounds
    /// it, whatever else the deployment does.
    fn rs256_limit(&self, md: &mut String) {
        let Some(sig_ms) = self.rs256_ms else {
            md.push_str("RS256 physical limit: the signature was not timed.\n\n");
            return;
        };
        let limit = self.cores as f64 * 1000.0 / sig_ms;
        md.push_str(&format!(
            "SSO round trip (RS256) against its physical limit = {} cores ÷ one RSA-2048 signature ({sig_ms:.3} ms, \
             median of 51 in this process, signed as the server signs: `KeySet::sign`, aws-lc-rs, a typical ID \
             token) = {limit:.0} /s:\n\n",
            self.cores
        ));
        md.push_str("| Deployment | Clients | Round trips/s | p99 | Share of the limit |\n|---|---:|---:|---:|---:|\n");
        for r in self.runs.iter().filter(|r| r.kind.is_coop()) {
            for &clients in &self.settings.clients {
                if let Some(m) = r.cell(Scenario::Sso, clients) {
                    md.push_str(&format!(
                        "| {} | {clients} | {:.0} | {} ms | {:.0} % |\n",
                        r.name,
                        m.ops_per_s,
                        ms(m.p99_ms),
                        m.ops_per_s / limit * 100.0
                    ));
                }
            }
        }
        md.push('\n');
    }
}

/// coop-idp on SQLite ÷ node in memory, in operations per second of server
/// CPU (the inverse ratio of CPU per operation), at `EMBEDDED_CLIENTS`.
fn embedded(md: &mut String, ours: &TargetRun, anchor: &TargetRun) {
    md.push_str(&format!(
        "Embedded path: {} ÷ {}, operations per second of server CPU (= the anchor's CPU per operation ÷ \
         coop-idp's), at {EMBEDDED_CLIENTS} clients; target ≥ {TARGET_EMBEDDED}× with a p99 no worse than the \
         anchor's:\n\n",
        ours.name, anchor.name
    ));
    md.push_str(
        "| Scenario | coop-idp: ops/s · CPU/op · p99 | anchor: ops/s · CPU/op · p99 | Ops per CPU-second ratio | \
         Target |\n|---|---|---|---:|---|\n",
    );
    let side = |m: &crate::support::Measured| {
        format!("{:.0} /s · {:.3} ms · p99 {} ms", m.ops_per_s, m.server_cpu_ms, ms(m.p99_ms))
    };
    for scenario in Scenario::COMPARED {
        match (ours.cell(scenario, EMBEDDED_CLIENTS), anchor.cell(scenario, EMBEDDED_CLIENTS)) {
            (Some(a), Some(b)) => {
                let ratio = b.server_cpu_ms / a.server_cpu_ms;
                let ok = ratio >= TARGET_EMBEDDED && a.p99_ms <= b.p99_ms && a.errors == 0 && b.errors == 0;
                md.push_str(&format!(
                    "| {} | {} | {} | {ratio:.2}× | {} |\n",
                    scenario.label(),
                    side(a),
                    side(b),
                    pass(ok)
                ));
            }
            _ => md.push_str(&format!(
                "| {} | — | — | — | no {EMBEDDED_CLIENTS}-client cell (COOP_IDP_BENCH_CLIENTS) |\n",
                scenario.label()
            )),
        }
    }
    md.push('\n');
}

/// Two coop-idp instances ÷ node with Redis and workers, at equal p99.
fn scale_out(md: &mut String, ours: &TargetRun, theirs: &TargetRun) {
    md.push_str(&format!(
        "Scale-out path at equal p99: the best throughput of {}, against the best of {} among its cells whose \
         p99 is not above that; target ≥ {TARGET_SCALE_OUT}×:\n\n",
        theirs.name, ours.name
    ));
    md.push_str(
        "| Scenario | node with Redis, best | coop-idp | coop-idp best at ≤ that p99 | Ratio | Target |\n\
         |---|---|---|---|---:|---|\n",
    );
    for scenario in Scenario::COMPARED {
        if let Some(row) = equal_p99_row(ours, theirs, scenario) {
            md.push_str(&format!("{row} {} |\n", pass(row.ratio >= TARGET_SCALE_OUT)));
        }
    }
    md.push('\n');
}
