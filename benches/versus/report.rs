//! The markdown report: every cell, the ratios against node with Redis, the
//! sign-ins against the Argon2 limit, the metrics middleware; the issue-18
//! tables are in `targets.rs`.

use std::process::Command;

use crate::metrics::{Ab, Micro};
use crate::support::*;
use crate::{Cell, Kind, Scenario, Settings, TargetRun};

/// Issue 7: coop-idp ÷ node with Redis at equal p99.
const TARGET_RATIO: f64 = 5.0;
const TARGET_SIGNIN_SHARE: f64 = 0.80;

pub struct Report<'a> {
    pub settings: &'a Settings,
    pub cores: usize,
    pub commit: String,
    pub load_before: String,
    pub load_after: String,
    pub argon2_ms: f64,
    pub argon2_limit: f64,
    pub node_hash_ms: Option<f64>,
    /// One RS256 ID-token signature, ms (`signature.rs`).
    pub rs256_ms: Option<f64>,
    pub runs: &'a [TargetRun],
    pub notes: &'a [String],
    pub micro: Option<Micro>,
    pub ab: Option<Ab>,
}

impl Report<'_> {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        md.push_str(&format!(
            "Run of {date}, commit {}, {} cores, {} s per cell, load average (1, 5, 15 min) {} before and {} after.\n\n",
            self.commit,
            self.cores,
            self.settings.secs.as_secs(),
            self.load_before,
            self.load_after
        ));
        for note in self.notes {
            md.push_str(&format!("{note}\n\n"));
        }
        if !self.runs.is_empty() {
            self.cells_and_ratios(&mut md);
            self.issue_18(&mut md);
        }
        self.metrics(&mut md);
        md
    }

    /// Every cell, the ratios against node and the sign-ins.
    fn cells_and_ratios(&self, md: &mut String) {
        // Every cell.
        md.push_str("| Scenario | Clients |");
        for r in self.runs {
            md.push_str(&format!(" {} |", r.name));
        }
        md.push_str("\n|---|---:|");
        for _ in self.runs {
            md.push_str("---|");
        }
        md.push('\n');
        for scenario in Scenario::ALL {
            for &clients in &self.settings.clients {
                md.push_str(&format!("| {} | {clients} |", scenario.label()));
                for r in self.runs {
                    match r.cell(scenario, clients) {
                        Some(m) => md.push_str(&format!(
                            " {:.0} /s · p50 {} · p99 {} ms · {} err · {:.2} ms CPU/op |",
                            m.ops_per_s,
                            ms(m.p50_ms),
                            ms(m.p99_ms),
                            m.errors,
                            m.server_cpu_ms
                        )),
                        None => md.push_str(" — |"),
                    }
                }
                md.push('\n');
            }
        }
        md.push_str("| RSS at rest after one sign-in → peak (Σ VmHWM) | |");
        for r in self.runs {
            md.push_str(&format!(" {:.0} → {:.0} MiB ({} processes) |", r.idle_rss, r.peak_rss, r.processes));
        }
        md.push_str("\n\n");

        // Ratios against node.
        let node = self.runs.iter().find(|r| r.kind == Kind::NodeRedis);
        let coops: Vec<&TargetRun> = self.runs.iter().filter(|r| r.kind.is_coop()).collect();
        if let Some(node) = node {
            md.push_str(
                "Throughput ratio coop-idp ÷ node with Redis and workers at the same number of clients, with both \
                 p99 (issue 7's target: ≥ 5× at equal p99):\n\n",
            );
            md.push_str("| Scenario | Clients |");
            for c in &coops {
                md.push_str(&format!(" {} ÷ node | p99 coop-idp vs node |", c.name));
            }
            md.push_str("\n|---|---:|");
            for _ in &coops {
                md.push_str("---:|---|");
            }
            md.push('\n');
            for scenario in Scenario::COMPARED {
                for &clients in &self.settings.clients {
                    md.push_str(&format!("| {} | {clients} |", scenario.label()));
                    for c in &coops {
                        match (c.cell(scenario, clients), node.cell(scenario, clients)) {
                            (Some(a), Some(b)) => md.push_str(&format!(
                                " {:.1}× | {} vs {} ms |",
                                a.ops_per_s / b.ops_per_s,
                                ms(a.p99_ms),
                                ms(b.p99_ms)
                            )),
                            _ => md.push_str(" — | — |"),
                        }
                    }
                    md.push('\n');
                }
            }
            md.push_str(
                "\nAt equal p99: node's best throughput, against coop-idp's best throughput among the cells whose \
                 p99 is not above node's p99 in that cell:\n\n",
            );
            md.push_str(
                "| Scenario | node with Redis, best | coop-idp | coop-idp best at ≤ that p99 | Ratio | Target ≥ 5× |\n",
            );
            md.push_str("|---|---|---|---|---:|---|\n");
            for scenario in Scenario::COMPARED {
                for c in &coops {
                    if let Some(row) = equal_p99_row(c, node, scenario) {
                        md.push_str(&format!("{row} {} |\n", pass(row.ratio >= TARGET_RATIO)));
                    }
                }
            }
            md.push('\n');
        }

        // Sign-ins against the Argon2 limit.
        md.push_str(&format!(
            "Password sign-ins against the Argon2 limit = {} cores ÷ one hash ({:.1} ms, Rust `argon2`, m={ARGON2_MEMORY_KIB} \
             t={ARGON2_ITERATIONS} p={ARGON2_PARALLELISM}) = {:.1} /s{}:\n\n",
            self.cores,
            self.argon2_ms,
            self.argon2_limit,
            self.node_hash_ms
                .map(|n| format!(
                    "; node's `argon2` package takes {n:.1} ms for the same hash (its own limit {:.1} /s)",
                    self.cores as f64 * 1000.0 / n
                ))
                .unwrap_or_default()
        ));
        md.push_str(
            "| Target | Clients | Sign-ins/s | p99 | % of the limit | Target ≥ 80 % |\n|---|---:|---:|---:|---:|---|\n",
        );
        for r in self.runs {
            for &clients in &self.settings.clients {
                if let Some(m) = r.cell(Scenario::Signin, clients) {
                    let share = m.ops_per_s / self.argon2_limit;
                    md.push_str(&format!(
                        "| {} | {clients} | {:.1} | {} ms | {:.0} % | {} |\n",
                        r.name,
                        m.ops_per_s,
                        ms(m.p99_ms),
                        share * 100.0,
                        if clients < self.cores {
                            "(fewer clients than cores)"
                        } else if share >= TARGET_SIGNIN_SHARE && m.errors == 0 {
                            "PASS"
                        } else {
                            "MISS"
                        }
                    ));
                }
            }
        }
        md.push('\n');
        for r in self.runs {
            for c in &r.cells {
                if let Some(e) = &c.m.first_error {
                    md.push_str(&format!(
                        "First error, {} · {} · {} clients ({} in all): {e}\n\n",
                        r.name,
                        c.scenario.label(),
                        c.clients,
                        c.m.errors
                    ));
                }
            }
        }
    }

    /// The metrics middleware: micro-benchmark and A/B.
    fn metrics(&self, md: &mut String) {
        if let Some(micro) = &self.micro {
            md.push_str(&format!(
                "Metrics middleware: `metrics::request` costs {:.0} ns per request on one thread, {:.0} ns with two \
                 threads counting at once (one request per refresh, three per SSO round trip).\n\n",
                micro.one_thread_ns, micro.two_threads_ns
            ));
        }
        if let Some(ab) = &self.ab {
            md.push_str(&format!(
                "Metrics A/B, coop-idp on SQLite, {} clients, mean of {} alternated rounds per side:\n\n",
                ab.clients, ab.rounds
            ));
            md.push_str("| Scenario | `metrics_listen` set (middleware on) | unset (off) | Throughput off ÷ on | CPU/op on − off |\n|---|---|---|---:|---:|\n");
            for (scenario, on, off) in &ab.rows {
                md.push_str(&format!(
                    "| {} | {:.0} /s · p99 {} ms · {:.3} ms CPU/op | {:.0} /s · p99 {} ms · {:.3} ms CPU/op | {:.3} | {:+.1} µs |\n",
                    scenario.label(),
                    on.ops_per_s,
                    ms(on.p99_ms),
                    on.server_cpu_ms,
                    off.ops_per_s,
                    ms(off.p99_ms),
                    off.server_cpu_ms,
                    off.ops_per_s / on.ops_per_s,
                    (on.server_cpu_ms - off.server_cpu_ms) * 1000.0
                ));
            }
            md.push('\n');
        }
    }
}

pub fn ms(v: f64) -> String {
    if v < 10.0 { format!("{v:.1}") } else { format!("{v:.0}") }
}

pub fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

/// One row of an "at equal p99" table: `theirs`'s best cell of `scenario`
/// (without errors), against `ours`'s best cell whose p99 is not above it.
pub struct EqualP99 {
    pub scenario: Scenario,
    pub theirs: String,
    pub ours_name: String,
    pub ours: String,
    pub ratio: f64,
}

impl std::fmt::Display for EqualP99 {
    /// The row without its last column (the verdict).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "| {} | {} | {} | {} | {:.1}× |",
            self.scenario.label(),
            self.theirs,
            self.ours_name,
            self.ours,
            self.ratio
        )
    }
}

pub fn equal_p99_row(ours: &TargetRun, theirs: &TargetRun, scenario: Scenario) -> Option<EqualP99> {
    let bn = best_cell(theirs, scenario, f64::INFINITY)?;
    let (text, ratio) = match best_cell(ours, scenario, bn.m.p99_ms) {
        Some(x) => (
            format!("{:.0} /s, p99 {} ms ({} clients)", x.m.ops_per_s, ms(x.m.p99_ms), x.clients),
            x.m.ops_per_s / bn.m.ops_per_s,
        ),
        None => ("no cell at that p99".into(), 0.0),
    };
    Some(EqualP99 {
        scenario,
        theirs: format!("{:.0} /s, p99 {} ms ({} clients)", bn.m.ops_per_s, ms(bn.m.p99_ms), bn.clients),
        ours_name: ours.name.clone(),
        ours: text,
        ratio,
    })
}

/// The fastest cell of `scenario` without errors whose p99 is at most `p99_cap`.
fn best_cell(run: &TargetRun, scenario: Scenario, p99_cap: f64) -> Option<&Cell> {
    run.cells
        .iter()
        .filter(|c| c.scenario == scenario && c.m.errors == 0 && c.m.p99_ms <= p99_cap)
        .max_by(|a, b| a.m.ops_per_s.total_cmp(&b.m.ops_per_s))
}
