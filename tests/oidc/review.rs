//! Yearly review (R13): status by deadline, reminders sent once per deadline
//! to the annex-2 habilitation manager, digest to the annex-3 one.

use coop_idp::dates::format_iso;
use coop_idp::provisioning::review::{ReviewStatus, review, send_reminders};
use coop_idp::provisioning::{Annex2, Annex3, Contacts, NewPartner, add_partner, set_annex2, set_annex3};

use crate::common::*;
use crate::on_both_databases;

on_both_databases!(reminders_go_once_per_deadline_and_only_when_due);

/// A signature date whose yearly deadline falls `days` from today
/// (negative: already past).
fn signed_for_deadline_in(days: i64) -> String {
    let deadline = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    // The deadline is 12 months after the signature: go back a year.
    let signed = deadline.replace_year(deadline.year() - 1).unwrap_or(deadline - time::Duration::days(366));
    format_iso(signed)
}

async fn partner(server: &TestServer, id: &str, signed: &str, with_annex2: bool) {
    add_partner(&server.app, NewPartner { id, name: id, convention_signed: Some(signed), email_domains: &[] })
        .await
        .expect("partner");
    if with_annex2 {
        set_annex2(
            &server.app,
            Annex2 {
                partner_id: id,
                contacts: Contacts {
                    habilitation_name: "Claire Habil",
                    habilitation_email: &format!("habilitation@{id}.fr"),
                    security_name: "Sam Secu",
                    security_email: &format!("securite@{id}.fr"),
                },
                transmitted: signed,
            },
        )
        .await
        .expect("annex 2");
    }
}

async fn queued(server: &TestServer) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT recipient FROM mail_outbox ORDER BY recipient")
        .fetch_all(server.app.store.pool())
        .await
        .expect("outbox");
    rows.into_iter().map(|r| r.0).collect()
}

async fn reminders_go_once_per_deadline_and_only_when_due(db: Db) {
    let server = TestServer::start(db).await;
    // No annex since the signature: deadline past, in 10 days, in 200 days.
    partner(&server, "late", &signed_for_deadline_in(-30), true).await;
    partner(&server, "soon", &signed_for_deadline_in(10), true).await;
    partner(&server, "fresh", &signed_for_deadline_in(200), true).await;
    partner(&server, "orphan", &signed_for_deadline_in(-30), false).await;
    set_annex3(
        &server.app,
        Annex3 {
            contacts: Contacts {
                habilitation_name: "Caf Habil",
                habilitation_email: "habilitations@caf.fr",
                security_name: "Caf Secu",
                security_email: "rssi@caf.fr",
            },
            technical_referents: &["Tech Ref <tech@caf.fr>".to_string()],
            transmitted: &format_iso(time::OffsetDateTime::now_utc().date()),
        },
    )
    .await
    .expect("annex 3");

    let statuses: Vec<(String, ReviewStatus)> = review(&server.app.store, &server.app.clock)
        .await
        .expect("review")
        .into_iter()
        .map(|r| (r.partner_id, r.status))
        .collect();
    assert!(statuses.contains(&("late".into(), ReviewStatus::Overdue)), "{statuses:?}");
    assert!(statuses.contains(&("fresh".into(), ReviewStatus::UpToDate)), "{statuses:?}");
    assert!(statuses.contains(&("soon".into(), ReviewStatus::DueSoon)), "{statuses:?}");

    // The background job may already have run: count what is queued after two explicit runs.
    // A run while a partner above was half set up (its row written, its
    // annex 2 not yet) rightly warned about it then: start the warnings
    // afresh now that the setup is complete.
    sqlx::query("DELETE FROM review_reminders WHERE kind = 'no_contact'")
        .execute(server.app.store.pool())
        .await
        .expect("forget the setup's warnings");
    send_reminders(&server.app).await.expect("reminders");
    let first = queued(&server).await;
    assert!(first.contains(&"habilitation@late.fr".to_string()), "{first:?}");
    assert!(first.contains(&"habilitations@caf.fr".to_string()), "digest: {first:?}");
    assert!(first.contains(&"habilitation@soon.fr".to_string()), "due soon: {first:?}");
    assert!(!first.contains(&"habilitation@fresh.fr".to_string()), "not due: {first:?}");
    assert_eq!(send_reminders(&server.app).await.expect("reminders"), 0, "sent once per deadline");
    assert_eq!(queued(&server).await, first);
    assert_eq!(first.iter().filter(|r| r.as_str() == "habilitation@late.fr").count(), 1);

    // A partner due for review without an annex-2 contact gets no mail; the
    // warning about it is recorded once for the day, whatever the runs.
    assert!(!first.iter().any(|r| r.contains("orphan")), "{first:?}");
    let warned: Vec<(String, String)> =
        sqlx::query_as("SELECT partner_id, deadline FROM review_reminders WHERE kind = 'no_contact'")
            .fetch_all(server.app.store.pool())
            .await
            .expect("warnings");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0].0, "orphan", "only the partner without a contact");
}
