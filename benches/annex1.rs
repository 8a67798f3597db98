//! Annex-1 import of 5,000 rows on SQLite: dry run and apply, timed
//! (target ≤ 2 s each, email delivery excluded: the outbox is only filled).
//!
//!     cargo bench --bench annex1

use std::time::Instant;

use coop_idp::clock::Clock;
use coop_idp::config::Config;
use coop_idp::provisioning::annex1::apply::{Import, import};
use coop_idp::provisioning::{NewPartner, add_partner};

const ROWS: usize = 5_000;

fn annex(rows: usize, closed_every: usize) -> Vec<u8> {
    let mut csv = String::from(
        "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction;Date de fin d'habilitation\n",
    );
    for i in 0..rows {
        let list = if closed_every > 0 && i % closed_every == 0 { "clôturé" } else { "ouvert" };
        csv.push_str(&format!("{list};Nom{i};Prénom{i};agent{i}@cc-girou.fr;Fonction {};\n", i % 17));
    }
    csv.into_bytes()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![
        ("COOP_IDP_DATA_DIR".to_string(), dir.path().join("data").display().to_string()),
        ("COOP_IDP_KEYS_DIR".to_string(), dir.path().join("keys").display().to_string()),
    ];
    let config = Config::from_sources(None, &env).expect("config");
    let app = coop_idp::startup::open(config, Clock::system()).await.expect("app");
    let domains = ["cc-girou.fr".to_string()];
    add_partner(
        &app,
        NewPartner {
            id: "cc-girou",
            name: "CC du Girou",
            convention_signed: Some("2026-01-15"),
            email_domains: &domains,
        },
    )
    .await
    .expect("partner");

    let first = annex(ROWS, 0);
    let second = annex(ROWS, 10);
    let run = |bytes: Vec<u8>, apply: bool| {
        let app = app.clone();
        async move {
            let started = Instant::now();
            let outcome = import(
                &app,
                Import {
                    partner_id: "cc-girou",
                    file_name: "annexe.csv",
                    bytes: &bytes,
                    transmitted: None,
                    apply,
                    operator: "bench",
                },
            )
            .await
            .expect("import");
            (started.elapsed(), outcome)
        }
    };
    let (dry, plan) = run(first.clone(), false).await;
    println!(
        "dry run, {ROWS} new rows:        {:>7.0} ms  ({} to open)",
        dry.as_secs_f64() * 1000.0,
        plan.plan.open.len()
    );
    let (applied, outcome) = run(first.clone(), true).await;
    assert!(outcome.applied, "{:?}", outcome.plan.errors.first());
    println!(
        "apply, {ROWS} openings:          {:>7.0} ms  (accounts, links, emails queued)",
        applied.as_secs_f64() * 1000.0
    );
    let (dry2, plan2) = run(second.clone(), false).await;
    println!(
        "dry run, {ROWS} existing rows:   {:>7.0} ms  ({} to close, {} unchanged)",
        dry2.as_secs_f64() * 1000.0,
        plan2.plan.close.len(),
        plan2.plan.unchanged.len()
    );
    let (applied2, outcome2) = run(second, true).await;
    assert!(outcome2.applied);
    println!("apply, {} closures:             {:>7.0} ms", outcome2.plan.close.len(), applied2.as_secs_f64() * 1000.0);
    let worst = [dry, applied, dry2, applied2].into_iter().max().unwrap_or_default();
    println!("target ≤ 2000 ms each: {}", if worst.as_millis() <= 2000 { "PASS" } else { "MISS" });
}
