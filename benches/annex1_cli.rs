//! Annex-1 apply as the habilitation manager runs it: the release binary,
//! `coop-idp annex1 import --apply`, on a fresh embedded database, for an
//! annex of 5,000 new people; once with the default outbox folder and once
//! with `smtp_url` pointing at a local SMTP sink. Reports the command's wall
//! time, its user and system CPU and its peak RSS (target ≤ 1 s wall). Then
//! the same annex through the console of `coop-idp serve` (`console.rs`):
//! the upload (dry run), "Appliquer", and the emails in the outbox folder.
//!
//!     cargo bench --bench annex1_cli
//!
//! `COOP_IDP_BENCH_ROWS` changes the annex size, `COOP_IDP_BENCH_RUNS` the
//! runs per configuration (default 3; the table gives the median run),
//! `COOP_IDP_BENCH_ONLY` the configurations run (a list of `folder`,
//! `smtp`, `console`; default all three).
//! `COOP_IDP_BENCH_KEEP=1` leaves the data folders in place at the end (see
//! `apply_once`: for A/B runs back to back, each run after the first would
//! otherwise pay for the files its predecessor removed). Remove them by
//! hand, then wait five minutes before the next measure.

#[path = "support/mod.rs"]
mod support;

#[path = "annex1_cli/console.rs"]
mod console;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{BenchResult, env_number, server_binary};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

struct Run {
    wall: Duration,
    user: Duration,
    system: Duration,
    max_rss_mib: f64,
}

fn annex(rows: usize) -> String {
    let mut csv = String::from(
        "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction;Date de fin d'habilitation\n",
    );
    for i in 0..rows {
        csv.push_str(&format!("ouvert;Nom{i};Prénom{i};agent{i}@cc-girou.fr;Fonction {};\n", i % 17));
    }
    csv
}

fn rusage_children() -> (Duration, Duration, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(usage.ru_utime), tv(usage.ru_stime), usage.ru_maxrss as f64 / 1024.0)
}

fn coop(bin: &Path, env: &[(String, String)], args: &[&str]) -> BenchResult<String> {
    let out = Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .map_err(|e| format!("coop-idp {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("coop-idp {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One apply on a fresh data folder; the CPU figures are the child's alone
/// (the setup commands run before the counters are read). The folder is
/// returned to be kept until the end: removing the 5,000 files of a run
/// makes ext4 search past their recently freed inodes when the next run
/// creates its own (seen as 2 s of system time), a cost of the bench, not
/// of an outbox that only grows.
fn apply_once(bin: &Path, csv: &str, smtp: Option<u16>) -> BenchResult<(Run, tempfile::TempDir)> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut env = vec![
        ("COOP_IDP_DATA_DIR".to_string(), dir.path().join("data").display().to_string()),
        ("COOP_IDP_KEYS_DIR".to_string(), dir.path().join("keys").display().to_string()),
    ];
    if let Some(port) = smtp {
        env.push(("COOP_IDP_SMTP_URL".to_string(), format!("smtp://127.0.0.1:{port}")));
    }
    let partner = ["partner", "add", "--id", "cc-girou", "--name", "CC du Girou"];
    coop(bin, &env, &[&partner[..], &["--convention-signed", "2026-01-15", "--email-domain", "cc-girou.fr"]].concat())?;
    let file = dir.path().join("annexe1.csv");
    std::fs::write(&file, csv).map_err(|e| e.to_string())?;
    let file = file.display().to_string();
    let (user0, system0, _) = rusage_children();
    let started = Instant::now();
    let printed = coop(bin, &env, &["annex1", "import", "--partner", "cc-girou", &file, "--apply"])?;
    let wall = started.elapsed();
    let (user1, system1, max_rss_mib) = rusage_children();
    if !printed.contains("appliqu") {
        return Err(format!("the annex was not applied: {printed}"));
    }
    Ok((Run { wall, user: user1 - user0, system: system1 - system0, max_rss_mib }, dir))
}

/// A sink that answers every SMTP command with success and counts messages.
async fn smtp_sink() -> BenchResult<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if in_data {
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        b"250 queued\r\n"
                    } else {
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        match verb.as_str() {
                            "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                            "DATA" => {
                                in_data = true;
                                b"354 go on\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                break;
                            }
                            _ => b"250 ok\r\n",
                        }
                    };
                    if write.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Whether `COOP_IDP_BENCH_ONLY` (a list) includes `name`; all when unset.
fn selected(name: &str) -> bool {
    support::env_text("COOP_IDP_BENCH_ONLY").is_none_or(|only| only.split([',', ' ']).any(|n| n == name))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let bin = server_binary();
    let rows = env_number("COOP_IDP_BENCH_ROWS", 5_000) as usize;
    let runs = env_number("COOP_IDP_BENCH_RUNS", 3) as usize;
    let csv = annex(rows);
    let port = smtp_sink().await?;
    println!("annex1 import --apply, {rows} new people, fresh SQLite database, {runs} runs each (median)");
    println!("| outbox | wall | user CPU | system CPU | peak RSS |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut worst = Duration::ZERO;
    let mut kept = Vec::new();
    for (name, smtp) in [("folder", None), ("smtp", Some(port))] {
        if !selected(name) {
            continue;
        }
        let mut all = Vec::new();
        for _ in 0..runs {
            let (bin, csv) = (bin.clone(), csv.clone());
            let (run, dir) = tokio::task::spawn_blocking(move || apply_once(&bin, &csv, smtp))
                .await
                .map_err(|e| e.to_string())??;
            all.push(run);
            kept.push(dir);
        }
        all.sort_by_key(|r| r.wall);
        let m = &all[all.len() / 2];
        worst = worst.max(m.wall);
        let label = if smtp.is_some() { "smtp_url (local sink)" } else { "default (folder)" };
        println!(
            "| {label} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} MiB |",
            ms(m.wall),
            ms(m.user),
            ms(m.system),
            m.max_rss_mib
        );
    }
    if selected("console") {
        let mut all = Vec::new();
        for _ in 0..runs {
            let (run, dir) = console::console_once(&bin, rows, &csv).await?;
            all.push(run);
            kept.push(dir);
        }
        all.sort_by_key(|r| r.delivered);
        let m = &all[all.len() / 2];
        worst = worst.max(m.delivered);
        println!("\nconsole (coop-idp serve, outbox folder), {runs} runs (median by the last email)");
        println!(
            "| upload (dry run) | Appliquer | last email in the folder | server user CPU | server system CPU | server peak RSS |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        println!(
            "| {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} MiB |",
            ms(m.upload),
            ms(m.apply),
            ms(m.delivered),
            ms(m.user),
            ms(m.system),
            m.max_rss_mib
        );
    }
    println!("target ≤ 1000 ms wall: {}", if worst.as_millis() <= 1000 { "PASS" } else { "MISS" });
    if support::env_text("COOP_IDP_BENCH_KEEP").is_some() {
        for dir in kept {
            println!("kept {}", dir.keep().display());
        }
    }
    Ok(())
}
