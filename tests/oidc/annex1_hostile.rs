//! Hostile annex-1 files through the admin API (issue 13): each crafted
//! workbook is refused with a clear error naming the problem, changes
//! nothing, and the server keeps answering while they are parsed, the
//! lowest administrative role (a partner's habilitation manager) being
//! enough to upload them.

use std::time::Duration;

use coop_idp::provisioning::annex1::fixture::hostile;
use serde_json::Value;

use crate::annex1::{setup_partner, snapshot};
use crate::common::*;
use crate::on_both_databases;

on_both_databases!(hostile_annexes_are_refused_change_nothing_and_the_server_keeps_answering);

const MANAGER: &str = "claire.habil@cc-girou.fr";

async fn hostile_annexes_are_refused_change_nothing_and_the_server_keeps_answering(db: Db) {
    let server = TestServer::start(db).await;
    setup_partner(&server, Some("2026-01-05")).await;
    let manager = server.add_account(MANAGER, Some(("cc-girou", "CC du Girou"))).await;
    server.grant_role(&manager, "partner_habilitation").await;
    let (admin, csrf) = signed_in(&server, MANAGER).await;
    let before = snapshot(&server).await;

    let files: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("annexe1.xlsx", hostile::sparse_xlsx(), "sheet_too_large", "XFD1048576"),
        ("annexe1.xlsx", hostile::dense_xlsx(3_200, 64), "sheet_too_large", "200000"),
        ("annexe1.xlsx", hostile::shared_string_bomb_xlsx(20 << 20), "archive_too_large", "sharedStrings.xml"),
        ("annexe1.xlsx", hostile::zip_bomb_xlsx(17 << 20), "archive_too_large", "padding.bin"),
        ("annexe1.ods", hostile::ods_repeated_rows(1_048_576), "sheet_too_large", "10000"),
        ("annexe1.xlsx", hostile::csv_as_xlsx(), "unreadable_file", "CSV"),
        ("annexe1.xlsx", hostile::truncated_xlsx(), "unreadable_file", "endommagée"),
    ];
    let uploads = files.iter().map(|(name, bytes, code, detail)| {
        let request = admin
            .post(server.url(&format!("/admin/api/partners/cc-girou/annex1?file_name={name}")))
            .header("x-csrf-token", &csrf)
            .body(bytes.clone());
        async move {
            let r = request.send().await.expect("upload");
            assert_eq!(r.status(), 400, "{name} ({code})");
            let body: Value = r.json().await.expect("json");
            let message = body["message"].as_str().unwrap_or_default().to_string();
            assert!(message.contains(&format!("[{code}]")) && message.contains(detail), "{code}: {message}");
        }
    });
    // While the files are parsed (all at once, two at a time), the server
    // answers: the parse holds no thread of the async runtime.
    let discovery = async {
        for _ in 0..10 {
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                http_client().get(server.url("/.well-known/openid-configuration")).send(),
            )
            .await
            .expect("discovery answers during the uploads")
            .expect("discovery");
            assert_eq!(r.status(), 200);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::join!(futures::future::join_all(uploads), discovery);
    assert_eq!(snapshot(&server).await, before, "a refused file changes nothing");

    // The same manager's well-formed annex is still read afterwards.
    let good = format!(
        "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction\n\
         ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG\n\
         ouvert;Dupont;Claire;{MANAGER};Responsable des habilitations\n"
    );
    let r = admin
        .post(server.url("/admin/api/partners/cc-girou/annex1?file_name=annexe1.csv"))
        .header("x-csrf-token", &csrf)
        .body(good)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200);
    let plan: Value = r.json().await.expect("plan");
    assert_eq!(plan["open"][0]["email"], "marie.dupont@cc-girou.fr", "{plan}");
}
