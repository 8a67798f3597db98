//! The cost of the metrics middleware: a micro-benchmark of the counting
//! and an A/B of two SQLite servers with and without `metrics_listen`.

use std::time::{Duration, Instant};

use crate::coop::start_sqlite;
use crate::support::*;
use crate::{Scenario, Settings, Started};

pub struct Micro {
    pub one_thread_ns: f64,
    pub two_threads_ns: f64,
}

/// The per-request counting alone (`metrics::request`: two label sets
/// built, a counter and a histogram found and bumped), ns per call.
pub fn metrics_micro() -> Micro {
    let calls = 1_000_000u32;
    let run = |n: u32| {
        let routes = ["/token", "/authorize", "/userinfo"];
        let t = Instant::now();
        for i in 0..n {
            coop_idp::metrics::request(routes[(i % 3) as usize], "POST", 200, Duration::from_micros(700));
        }
        t.elapsed().as_secs_f64() * 1e9 / n as f64
    };
    run(10_000);
    let one_thread_ns = run(calls);
    let threads: Vec<_> = (0..2).map(|_| std::thread::spawn(move || run(calls))).collect();
    let two: Vec<f64> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    let two_threads_ns = two.iter().sum::<f64>() / two.len() as f64;
    println!(
        "metrics::request: {one_thread_ns:.0} ns/call on one thread, {two_threads_ns:.0} ns/call with two threads at once"
    );
    Micro { one_thread_ns, two_threads_ns }
}

pub struct Ab {
    pub clients: usize,
    pub rounds: usize,
    /// (scenario, with metrics, without metrics): the mean of the rounds.
    pub rows: Vec<(Scenario, Measured, Measured)>,
}

/// Two SQLite servers, one with `metrics_listen` (the middleware on), one
/// without; refresh and SSO at 32 clients, alternating A/B then B/A.
pub async fn metrics_ab(settings: &Settings) -> BenchResult<Ab> {
    println!("\n== metrics middleware A/B (SQLite) ==");
    let with = start_sqlite(settings, true).await?;
    let without = start_sqlite(settings, false).await?;
    let clients = 32;
    let rounds = 2;
    let sessions = [sso_sessions(&with.rs256, clients).await?, sso_sessions(&without.rs256, clients).await?];
    let mut rows = Vec::new();
    for scenario in [Scenario::Refresh, Scenario::Sso] {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for round in 0..rounds {
            let order: [(bool, &Started); 2] =
                if round % 2 == 0 { [(true, &with), (false, &without)] } else { [(false, &without), (true, &with)] };
            for (metrics, t) in order {
                let sessions = &sessions[usize::from(!metrics)];
                let servers: Vec<&Server> = t.servers.iter().collect();
                let mut cpu = CpuMeter::new(&servers);
                let mut m = match scenario {
                    Scenario::Refresh => {
                        // coop-idp keeps the session's cookie: `_now` is the same.
                        let (chains, _now) = new_chains(&t.es256, &t.session, clients).await?;
                        cpu.reset(&servers);
                        run_refresh(&t.es256, &t.session, chains, settings.secs).await
                    }
                    _ => {
                        cpu.reset(&servers);
                        bench_sso(&t.rs256, sessions, clients, settings.secs).await
                    }
                };
                cpu.charge(&mut m, &servers);
                progress(&format!("{} · metrics {}", scenario.label(), if metrics { "on" } else { "off" }), &m);
                if metrics { a.push(m) } else { b.push(m) }
            }
        }
        rows.push((scenario, mean(&a), mean(&b)));
    }
    for t in [with, without] {
        let Started { mut servers, cleanup, .. } = t;
        for s in &mut servers {
            s.stop();
        }
        cleanup.run().await;
    }
    Ok(Ab { clients, rounds, rows })
}

fn mean(ms: &[Measured]) -> Measured {
    let n = ms.len().max(1) as f64;
    let avg = |f: fn(&Measured) -> f64| ms.iter().map(f).sum::<f64>() / n;
    Measured {
        ops_per_s: avg(|m| m.ops_per_s),
        p50_ms: avg(|m| m.p50_ms),
        p99_ms: avg(|m| m.p99_ms),
        ops: ms.iter().map(|m| m.ops).sum(),
        errors: ms.iter().map(|m| m.errors).sum(),
        first_error: ms.iter().find_map(|m| m.first_error.clone()),
        server_cpu_ms: avg(|m| m.server_cpu_ms),
        client_cpu_ms: avg(|m| m.client_cpu_ms),
        rss_after_mib: avg(|m| m.rss_after_mib),
    }
}
