//! The administration console at /admin (issue 6 part 2): each role reaches
//! its pages and gets 403 on the others, a session without the second
//! factor is sent to give it, the annex-1 upload shows the plan and
//! "Appliquer" applies the same file once, the log search has every filter
//! of `logs query`, pages and exports CSV (reads logged), closing an access
//! asks for confirmation, and no page needs a script.

use coop_idp::audit;
use coop_idp::store::events::EventFilter;

use crate::common::admin::*;
use crate::common::*;
use crate::on_both_databases;

on_both_databases!(
    each_role_reaches_its_pages_and_not_the_others,
    annex1_upload_shows_the_plan_and_applies_once,
    log_search_filters_pages_and_exports_csv,
    closing_an_access_asks_for_confirmation,
    a_step_up_returns_to_the_console_page_asked_for,
    a_sign_in_from_a_console_page_returns_to_it,
    the_console_has_a_sign_out_button,
    the_console_shows_labels_and_local_times_and_exports_codes,
    french_dates_filter_the_log_and_a_bad_one_names_its_field,
    an_applied_annex_says_so_and_an_older_one_is_refused,
    caf_roles_go_to_the_caf_staff_only,
    caf_email_domains_narrow_the_caf_staff,
);

async fn get(b: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = b.get(url).send().await.expect("get");
    let status = r.status().as_u16();
    let to = location(&r);
    (status, to, r.text().await.unwrap_or_default())
}

/// A page usable without JavaScript: no script element, no inline handler.
fn assert_no_script(path: &str, html: &str) {
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script") && !lower.contains(" onclick="), "{path} needs no script");
}

async fn each_role_reaches_its_pages_and_not_the_others(db: Db) {
    let server = TestServer::start(db).await;
    let ids = setup(&server).await;
    let (security, _) = signed_in(&server, SECURITY).await;
    let (habilitation, _) = signed_in(&server, HABILITATION).await;
    let (manager, _) = signed_in(&server, PARTNER_MANAGER).await;
    let (agent, _) = signed_in(&server, AGENT).await;
    let anonymous = browser();

    // (path, who may: security, habilitation, partner manager)
    let pages = [
        ("/admin", true, true, true),
        ("/admin/logs", true, false, false),
        ("/admin/alerts", true, false, false),
        ("/admin/integrity", true, false, false),
        ("/admin/purges", true, false, false),
        ("/admin/partners", false, true, true),
        ("/admin/partners/cc-girou", false, true, true),
        ("/admin/partners/cc-girou/annex1", false, true, true),
        ("/admin/partners/ville-autre", false, true, false),
        ("/admin/review", false, true, true),
    ];
    for (path, sec, hab, man) in pages {
        let url = server.url(path);
        let (status, to, _) = get(&anonymous, &url).await;
        let back = url::form_urlencoded::Serializer::new(String::new()).append_pair("next", path).finish();
        assert_eq!((status, to), (303, format!("/signin?{back}")), "{path} without a session, to come back");
        assert_eq!(get(&agent, &url).await.0, 403, "{path} for an agent without a role");
        for (b, allowed, who) in
            [(&security, sec, "security"), (&habilitation, hab, "habilitation"), (&manager, man, "partner")]
        {
            let (status, _, html) = get(b, &url).await;
            assert_eq!(status, if allowed { 200 } else { 403 }, "{path} for {who}");
            if allowed {
                assert_no_script(path, &html);
                assert!(html.contains("<title>") && html.contains("Console d"), "{path}: title");
            }
        }
    }
    // Tables have a caption and header cells with a scope.
    let (_, _, html) = get(&habilitation, &server.url("/admin/partners/cc-girou")).await;
    assert!(html.contains("<caption>") && html.contains("scope=\"col\""), "{html}");
    assert!(html.contains(AGENT));
    let (_, _, html) = get(&manager, &server.url("/admin/partners/cc-girou")).await;
    assert!(!html.contains("/close\""), "a partner's manager is read-only: {html}");
    // Closing is the Caf's: a partner's manager gets 403 on it.
    let close = server.url(&format!("/admin/accounts/{}/close", ids.agent));
    assert_eq!(get(&manager, &close).await.0, 403);
    assert_eq!(get(&habilitation, &close).await.0, 200);

    // A session opened on a password alone, role granted afterwards: sent
    // to enrol its second factor, not let in.
    let late = server.add_account("late@caf.fr", None).await;
    let (pwd_only, _) = signed_in(&server, "late@caf.fr").await;
    server.grant_role(&late, "caf_security").await;
    let (status, to, _) = get(&pwd_only, &server.url("/admin/logs")).await;
    assert_eq!((status, to.as_str()), (303, "/signin/otp/enrol"));
    let (status, _, html) = get(&pwd_only, &server.url("/signin/otp/enrol")).await;
    assert_eq!(status, 200, "the step-up starts an enrolment: {html}");
}

/// A multipart body with the CSRF token, a file and a transmission date.
fn multipart(csrf: &str, file_name: &str, content: &str) -> (String, Vec<u8>) {
    multipart_dated(csrf, file_name, content, "2026-02-01")
}

/// The same, transmitted on `transmitted` as typed.
fn multipart_dated(csrf: &str, file_name: &str, content: &str, transmitted: &str) -> (String, Vec<u8>) {
    let boundary = "coopidpboundary7MA4YWxkTrZu0gW";
    let mut body = String::new();
    body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"));
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"transmitted\"\r\n\r\n{transmitted}\r\n"
    ));
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: text/csv\r\n\r\n{content}\r\n"
    ));
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body.into_bytes())
}

const ANNEX: &str = "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction\r\n\
ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG\r\n\
ouvert;Habil;Claire;claire.habil@cc-girou.fr;Responsable des habilitations\r\n\
ouvert;N'Diaye;Jean-Éric;je.ndiaye@cc-girou.fr;Responsable petite enfance\r\n";

const BAD_ANNEX: &str = "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction\r\n\
ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG\r\n\
ouvert;;Paul;paul.intrus@cc-girou.fr;Agent\r\n";

async fn upload(server: &TestServer, b: &reqwest::Client, content: &str) -> (u16, String) {
    let url = server.url("/admin/partners/cc-girou/annex1");
    let form = b.get(&url).send().await.expect("form").text().await.expect("html");
    let csrf = hidden(&form, "csrf").expect("csrf");
    assert!(form.contains("enctype=\"multipart/form-data\"") && form.contains("for=\"file\""));
    let (ct, body) = multipart(&csrf, "annexe1.csv", content);
    let r = b.post(&url).header("content-type", ct).body(body).send().await.expect("upload");
    (r.status().as_u16(), r.text().await.expect("html"))
}

async fn annex1_upload_shows_the_plan_and_applies_once(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    let (habilitation, csrf) = signed_in(&server, HABILITATION).await;
    let (manager, man_csrf) = signed_in(&server, PARTNER_MANAGER).await;

    // A file with a problem: the plan shows it by line, nothing to apply.
    let (status, html) = upload(&server, &habilitation, BAD_ANNEX).await;
    assert_eq!(status, 200);
    assert!(html.contains("missing_field") && html.contains("<th scope=\"row\">3</th>"), "{html}");
    assert!(hidden(&html, "handle").is_none(), "no Appliquer with errors");

    // A file that cannot be read: its error on the upload form, kept for
    // the corrected file (it was an internal-error page).
    let (status, html) = upload(&server, &habilitation, "Nom;Prénom\r\nDupont;Marie\r\n").await;
    assert_eq!(status, 400);
    assert!(html.contains("[missing_column]") && html.contains("enctype=\"multipart/form-data\""), "{html}");

    // A partner's manager may propose: the plan, but no Appliquer.
    let (status, html) = upload(&server, &manager, ANNEX).await;
    assert_eq!(status, 200);
    assert!(html.contains("je.ndiaye@cc-girou.fr"), "{html}");
    assert!(hidden(&html, "handle").is_none());
    let r = manager
        .post(server.url("/admin/partners/cc-girou/annex1/apply"))
        .form(&[("csrf", man_csrf.as_str()), ("handle", "x")])
        .send()
        .await
        .expect("apply");
    assert_eq!(r.status(), 403);

    // The Caf's manager: dry run (nothing changes yet), then Appliquer.
    let (status, html) = upload(&server, &habilitation, ANNEX).await;
    assert_eq!(status, 200);
    assert!(html.contains("je.ndiaye@cc-girou.fr"));
    assert_no_script("plan", &html);
    let handle = hidden(&html, "handle").expect("Appliquer");
    assert!(server.app.store.account_by_email("je.ndiaye@cc-girou.fr").await.expect("read").is_none());
    let apply = |h: String| {
        let b = habilitation.clone();
        let url = server.url("/admin/partners/cc-girou/annex1/apply");
        let csrf = csrf.clone();
        async move { b.post(url).form(&[("csrf", csrf.as_str()), ("handle", h.as_str())]).send().await.expect("apply") }
    };
    let r = habilitation
        .post(server.url("/admin/partners/cc-girou/annex1/apply"))
        .form(&[("csrf", "forged"), ("handle", handle.as_str())])
        .send()
        .await
        .expect("apply");
    assert_eq!(r.status(), 403, "CSRF");
    let r = apply(handle.clone()).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("html");
    assert!(html.contains("<h1>Changements appliqués — CC du Girou</h1>"), "{html}");
    assert!(server.app.store.account_by_email("je.ndiaye@cc-girou.fr").await.expect("read").is_some());
    // The handle is single-use.
    assert_eq!(apply(handle).await.status(), 400);
    let applied = server
        .app
        .store
        .query_events(&EventFilter { kind: Some("annex1_applied".into()), limit: 10, ..Default::default() })
        .await
        .expect("events");
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].actor, HABILITATION);
}

async fn log_search_filters_pages_and_exports_csv(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    let (security, _) = signed_in(&server, SECURITY).await;
    let target = "x.cible@cc-girou.fr";
    let events: Vec<audit::Event> = (0..60)
        .map(|i| {
            audit::Event::new(audit::kind::SIGNIN_FAILED, audit::Outcome::Failure, target)
                .email(target)
                .source(&audit::Source { ip: Some(format!("203.0.113.{}", i % 2)), user_agent: None })
        })
        .collect();
    audit::record(&server.app.store, &server.app.clock, events).await;

    // Every filter of `logs query` is a field of the form.
    let (_, _, form) = get(&security, &server.url("/admin/logs")).await;
    for name in ["email", "partner", "event", "ip", "since", "until"] {
        assert!(form.contains(&format!("name=\"{name}\"")), "filter {name}");
    }
    let rows = |html: &str| html.matches("<td><time").count();
    let (status, _, html) = get(&security, &server.url(&format!("/admin/logs?email={target}"))).await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html), 50, "first page");
    assert!(html.contains("offset=50"), "a next page");
    let (_, _, page2) = get(&security, &server.url(&format!("/admin/logs?email={target}&offset=50"))).await;
    assert_eq!(rows(&page2), 10);
    assert!(page2.contains("offset=0") && !page2.contains("offset=100"));
    let (_, _, by_ip) =
        get(&security, &server.url(&format!("/admin/logs?email={target}&ip=203.0.113.1&event=signin_failed"))).await;
    assert_eq!(rows(&by_ip), 30);
    let (_, _, none) = get(&security, &server.url(&format!("/admin/logs?email={target}&event=signin"))).await;
    assert_eq!(rows(&none), 0);
    let (_, _, future) = get(&security, &server.url(&format!("/admin/logs?email={target}&since=2999-01-01"))).await;
    assert_eq!(rows(&future), 0);
    let (status, _, bad) = get(&security, &server.url("/admin/logs?since=hier")).await;
    assert_eq!(status, 400);
    assert!(bad.contains("hier") && bad.contains("role=\"alert\""), "{bad}");

    // A typo is an error on the form, with every valid value, never an
    // empty result; the form keeps what was typed.
    let (status, _, bad) = get(&security, &server.url("/admin/logs?event=signin_fail&ip=203.0.113.1")).await;
    assert_eq!(status, 400);
    assert!(bad.contains("événement inconnu") && bad.contains("<code>signin_fail</code>"), "{bad}");
    for kind in coop_idp::audit::kind::ALL {
        assert!(bad.contains(&format!("<code>{kind}</code>")), "{kind} listed");
    }
    assert!(bad.contains("value=\"signin_fail\"") && bad.contains("value=\"203.0.113.1\""), "kept: {bad}");
    assert!(bad.contains("aria-describedby=\"f-event-hint filter-error\" aria-invalid=\"true\""), "{bad}");
    assert!(!bad.contains("<td><time"), "no result table");
    assert!(bad.contains("<title>Erreur : Journal des connexions — Console d"), "the title says so");
    let (status, _, bad) = get(&security, &server.url("/admin/logs?event=signin_fail&lang=en")).await;
    assert_eq!(status, 400);
    assert!(bad.contains("Unknown event kind:") && bad.contains("Valid values:"), "{bad}");
    for (query, says, lists) in [
        ("outcome=failed", "Résultat inconnu", "<code>success</code>, <code>failure</code>"),
        ("partner=cc-giro", "Partenaire inconnu", "<code>cc-girou</code>"),
        ("ip=203.0.113", "adresse IPv4 ou IPv6", "value=\"203.0.113\""),
        ("since=2026-02-01&until=2026-01-01", "La période est vide", "value=\"2026-01-01\""),
    ] {
        let (status, _, bad) = get(&security, &server.url(&format!("/admin/logs?{query}"))).await;
        assert_eq!(status, 400, "{query}");
        assert!(bad.contains(says) && bad.contains(lists), "{query}: {bad}");
    }
    // The other side: the values listed are accepted.
    let (status, _, _) =
        get(&security, &server.url("/admin/logs?event=signin_failed&outcome=failure&partner=cc-girou")).await;
    assert_eq!(status, 200);
    // An export of a bad filter goes back to the form, which says why.
    let (status, to, _) = get(&security, &server.url("/admin/logs/export?event=signin_fail")).await;
    assert_eq!((status, to.as_str()), (303, "/admin/logs?event=signin_fail&lang=fr"));

    // The export link carries the filters; the CSV has a header and 30 rows.
    assert!(by_ip.contains("export?email="));
    let r = security
        .get(server.url(&format!("/admin/logs/export?email={target}&ip=203.0.113.1")))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap_or("").starts_with("text/csv"));
    let csv = r.text().await.expect("csv");
    assert_eq!(csv.lines().count(), 31, "{csv}");
    // For a French spreadsheet: BOM, `;`, French headers (English with the page).
    assert!(csv.starts_with("\u{feff}N°;Date (UTC);Type d'événement;"), "{csv}");
    assert!(by_ip.contains("&amp;lang=fr\""), "the export link carries the page's language");
    let r = security
        .get(server.url(&format!("/admin/logs/export?email={target}&ip=203.0.113.1&lang=en")))
        .send()
        .await
        .expect("export");
    let csv = r.text().await.expect("csv");
    assert!(csv.starts_with("\u{feff}No.;Time (UTC);Event kind;"), "{csv}");
    assert_no_formula_cell(&csv);
    // Reads and exports are logged with the officer as actor.
    let count = |kind: &'static str| {
        let store = server.app.store.clone();
        async move {
            store
                .query_events(&EventFilter { kind: Some(kind.into()), limit: 100, ..Default::default() })
                .await
                .expect("events")
                .into_iter()
                .filter(|e| e.actor == SECURITY)
                .count()
        }
    };
    assert!(count("log_read").await >= 5);
    assert_eq!(count("log_exported").await, 2);
}

async fn closing_an_access_asks_for_confirmation(db: Db) {
    let server = TestServer::start(db).await;
    let ids = setup(&server).await;
    let (habilitation, csrf) = signed_in(&server, HABILITATION).await;
    let url = server.url(&format!("/admin/accounts/{}/close", ids.agent));
    let (status, _, html) = get(&habilitation, &url).await;
    assert_eq!(status, 200);
    assert!(html.contains(AGENT) && html.contains("method=\"post\""), "a confirmation page: {html}");
    let state = |server: &TestServer| {
        let store = server.app.store.clone();
        let id = ids.agent.clone();
        async move { store.account_by_id(&id).await.expect("read").expect("account").state }
    };
    assert_eq!(state(&server).await, "active", "the GET changed nothing");
    let r = habilitation.post(&url).form(&[("csrf", "forged")]).send().await.expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(state(&server).await, "active");
    let r = habilitation.post(&url).form(&[("csrf", csrf.as_str())]).send().await.expect("post");
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/admin/partners/cc-girou?done=closed");
    assert_eq!(state(&server).await, "closed");
    let closed = server
        .app
        .store
        .query_events(&EventFilter { kind: Some("access_closed".into()), limit: 10, ..Default::default() })
        .await
        .expect("events");
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].actor, HABILITATION);
}

/// A session opened on a password alone, whose account has since been
/// granted a role, is sent to the second factor from a console page: once
/// it is given (enrolment or code), the browser is back on that page. A
/// pending state naming anything but a console path leads to /admin.
async fn a_step_up_returns_to_the_console_page_asked_for(db: Db) {
    use crate::second_step::{ENROL, VERIFY, enrol, fresh_code, post_code};
    let server = TestServer::start(db).await;
    setup(&server).await;

    // Enrolment: the codes page's "Continuer" leads to the page asked for,
    // filters included.
    let late = server.add_account("late@caf.fr", None).await;
    let (b, _) = signed_in(&server, "late@caf.fr").await;
    server.grant_role(&late, "caf_security").await;
    let asked = "/admin/logs?email=x.cible%40cc-girou.fr&event=signin";
    let (status, to, _) = get(&b, &server.url(asked)).await;
    assert_eq!((status, to.as_str()), (303, ENROL));
    let (_, next) = enrol(&server, &b, "late@caf.fr").await;
    assert_eq!(next, asked, "back to the page asked for");
    let (status, _, html) = get(&b, &server.url(&next)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("value=\"x.cible@cc-girou.fr\""), "with its filters: {html}");

    // Verification: an agent who opted in (in another browser) after this
    // password-only session opened, then granted a role.
    let email = "opted.in@caf.fr";
    let account = server.add_account(email, None).await;
    let (old, _) = signed_in(&server, email).await;
    let (other, csrf) = signed_in(&server, email).await;
    let r =
        other.post(server.url("/account/security/totp")).form(&[("csrf", csrf.as_str())]).send().await.expect("opt in");
    assert_eq!((r.status().as_u16(), location(&r).as_str()), (303, ENROL));
    enrol(&server, &other, email).await;
    server.grant_role(&account, "caf_security").await;
    let (status, to, _) = get(&old, &server.url("/admin/alerts")).await;
    assert_eq!((status, to.as_str()), (303, VERIFY));
    let code = fresh_code(&server, email).await;
    let r = post_code(&server, &old, VERIFY, &code).await;
    assert_eq!((r.status().as_u16(), location(&r).as_str()), (303, "/admin/alerts"));
    assert_eq!(get(&old, &server.url("/admin/alerts")).await.0, 200, "the new session has the second factor");

    // The other side: a pending state whose return path is another site
    // (forged in the database: the server never stores one) leads to /admin.
    for (i, target) in ["https://evil.example/admin", "//evil.example", "/signin"].into_iter().enumerate() {
        let cookie = format!("forged-pending-state-{i}-0123456789abcdef");
        let row = coop_idp::store::totp::PendingSecondFactorRow {
            id_hash: coop_idp::crypto::hash_secret(&cookie),
            account_id: account.clone(),
            request: None,
            enrol_secret: None,
            return_to: Some(target.to_string()),
            expires_at: server.clock.now_ms() + 60_000,
        };
        let mut tx = server.app.store.begin_write().await.expect("tx");
        coop_idp::store::totp::insert_pending(&mut tx, &row, server.clock.now_ms()).await.expect("insert");
        tx.commit().await.expect("commit");
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let base = url::Url::parse(&server.base).expect("base");
        jar.add_cookie_str(&format!("coop_mfa={cookie}; Path=/"), &base);
        let c = reqwest::Client::builder()
            .cookie_provider(jar)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let code = fresh_code(&server, email).await;
        let r = post_code(&server, &c, VERIFY, &code).await;
        assert_eq!((r.status().as_u16(), location(&r).as_str()), (303, "/admin"), "{target}");
    }
}

/// A console page opened without a session sends the browser to sign in,
/// carrying the page; after the password and the second factor the browser
/// is back on it. A `next` that is not a console path is dropped: the
/// sign-in ends on its own page.
async fn a_sign_in_from_a_console_page_returns_to_it(db: Db) {
    use crate::second_step::{VERIFY, fresh_code, post_code};
    let server = TestServer::start(db).await;
    setup(&server).await;
    // The administrator enrols once (the second factor is then asked for).
    signed_in(&server, SECURITY).await;

    let asked = "/admin/logs?email=x.cible%40cc-girou.fr&event=signin";
    let b = browser();
    let (status, to, _) = get(&b, &server.url(asked)).await;
    assert_eq!(status, 303);
    assert!(to.starts_with("/signin?next="), "{to}");
    let (status, _, page) = get(&b, &server.url(&to)).await;
    assert_eq!(status, 200);
    let next = hidden(&page, "next").expect("the page asked for rides along");
    assert_eq!(next, asked);
    let csrf = hidden(&page, "csrf").expect("csrf");
    let form = [("csrf", csrf.as_str()), ("email", SECURITY), ("password", PASSWORD), ("next", next.as_str())];
    let r = b.post(server.url("/signin")).form(&form).send().await.expect("sign in");
    assert_eq!((r.status().as_u16(), location(&r).as_str()), (303, VERIFY));
    let code = fresh_code(&server, SECURITY).await;
    let r = post_code(&server, &b, VERIFY, &code).await;
    assert_eq!((r.status().as_u16(), location(&r).as_str()), (303, asked), "back on the page asked for");
    let (status, _, html) = get(&b, &server.url(asked)).await;
    assert_eq!(status, 200);
    assert!(html.contains("value=\"x.cible@cc-girou.fr\""), "with its filters: {html}");

    // The other side: another site, or a page outside the console, is not
    // carried (on the page, nor through the form).
    for target in ["https://evil.example/admin", "//evil.example/admin", "/signin", "/admin/../password/change"] {
        let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("next", target).finish();
        let (_, _, page) = get(&b, &server.url(&format!("/signin?{query}"))).await;
        assert_eq!(hidden(&page, "next"), None, "{target} not carried by the page");
        let b = browser();
        let page = b.get(server.url("/signin")).send().await.expect("page").text().await.expect("html");
        let csrf = hidden(&page, "csrf").expect("csrf");
        let form = [("csrf", csrf.as_str()), ("email", SECURITY), ("password", PASSWORD), ("next", target)];
        let r = b.post(server.url("/signin")).form(&form).send().await.expect("sign in");
        assert_eq!((r.status().as_u16(), location(&r).as_str()), (303, VERIFY), "{target}");
        let code = fresh_code(&server, SECURITY).await;
        let r = post_code(&server, &b, VERIFY, &code).await;
        assert_eq!(r.status(), 200, "{target}: the signed-in page, no redirect to it");
    }
}

async fn the_console_has_a_sign_out_button(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    let (security, _) = signed_in(&server, SECURITY).await;
    let (status, _, html) = get(&security, &server.url("/admin")).await;
    assert_eq!(status, 200);
    assert!(html.contains("action=\"/logout/confirm\"") && html.contains("Se déconnecter"), "{html}");
    let csrf = hidden(&html, "csrf").expect("csrf");
    let r = security.post(server.url("/logout/confirm")).form(&[("csrf", csrf.as_str())]).send().await.expect("out");
    assert_eq!(r.status(), 200);
    let (status, to, _) = get(&security, &server.url("/admin")).await;
    assert_eq!((status, to.as_str()), (303, "/signin?next=%2Fadmin"), "signed out");
}

/// Reads the connection-log search of `query` (French unless `lang=en`).
async fn logs(server: &TestServer, b: &reqwest::Client, query: &str) -> (u16, String) {
    let (status, _, html) = get(b, &server.url(&format!("/admin/logs?{query}"))).await;
    (status, html)
}

async fn the_console_shows_labels_and_local_times_and_exports_codes(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    let (security, _) = signed_in(&server, SECURITY).await;
    let (habilitation, _) = signed_in(&server, HABILITATION).await;
    let target = "x.cible@cc-girou.fr";
    let e = audit::Event::new(audit::kind::SIGNIN_FAILED, audit::Outcome::Failure, target).email(target);
    audit::record(&server.app.store, &server.app.clock, vec![e]).await;
    let records = server
        .app
        .store
        .query_events(&EventFilter { email_normalized: Some(target.into()), limit: 10, ..Default::default() })
        .await
        .expect("events");
    let shown = coop_idp::dates::format_local(records[0].time_ms);

    let (status, html) = logs(&server, &security, &format!("email={target}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("<span title=\"signin_failed\">connexion échouée</span>"), "{html}");
    assert!(html.contains("<span title=\"failure\">échec</span>"), "{html}");
    assert!(html.contains(&format!(">{shown}</time>")), "local time {shown}: {html}");
    assert_eq!(html.matches("Europe&#x2f;Paris").count(), 1, "the zone named once");
    assert!(html.contains("title=\"caf_security\">sécurité Caf</span>"), "the role's label: {html}");
    let (_, html) = logs(&server, &security, &format!("email={target}&lang=en")).await;
    assert!(html.contains("<span title=\"signin_failed\">failed sign-in</span>"), "{html}");
    assert!(html.contains("<span title=\"failure\">failure</span>") && html.contains("Paris time"), "{html}");

    // The exports keep the codes and UTC (PRODUCT.md "Connection-log records").
    let csv = security
        .get(server.url(&format!("/admin/logs/export?email={target}")))
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("csv");
    assert!(csv.contains(";signin_failed;failure;") && !csv.contains("échouée"), "{csv}");
    assert!(csv.contains(&coop_idp::clock::rfc3339_ms(records[0].time_ms)), "{csv}");

    // Conventions and accounts in words, the code as a tooltip.
    let (_, _, html) = get(&habilitation, &server.url("/admin/partners")).await;
    assert!(html.contains("title=\"in_force\">en vigueur</span>"), "{html}");
    let (_, _, html) = get(&habilitation, &server.url("/admin/partners/cc-girou")).await;
    assert!(html.contains("title=\"in_force\">en vigueur</span>"), "{html}");
    assert!(html.contains("title=\"active\">actif</span>") && !html.contains(">active</span>"), "{html}");
    assert!(html.contains("title=\"caf_habilitation\">habilitations Caf</span>"), "{html}");
    let (_, _, html) = get(&habilitation, &server.url("/admin/partners/cc-girou?lang=en")).await;
    assert!(html.contains("title=\"in_force\">in force</span>"), "{html}");
}

async fn french_dates_filter_the_log_and_a_bad_one_names_its_field(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    let (security, _) = signed_in(&server, SECURITY).await;
    let target = "x.cible@cc-girou.fr";
    let e = audit::Event::new(audit::kind::SIGNIN_FAILED, audit::Outcome::Failure, target).email(target);
    audit::record(&server.app.store, &server.app.clock, vec![e]).await;
    let rows = |html: &str| html.matches("<td><time").count();

    // JJ/MM/AAAA and AAAA-MM-JJ alike, on both sides of the record.
    for (query, found) in [
        ("since=01/01/2020", 1),
        ("since=2020-01-01", 1),
        ("since=01/01/2999", 0),
        ("until=01/01/2020", 0),
        ("since=1/1/2020&until=31/12/2999", 1),
        ("since=01/01/2020 08:30", 1),
    ] {
        let (status, html) = logs(&server, &security, &format!("email={target}&{query}")).await;
        assert_eq!((status, rows(&html)), (200, found), "{query}");
    }

    // A date that is none: one language at a time, naming the field.
    let (status, html) = logs(&server, &security, "since=31/02/2026").await;
    assert_eq!(status, 400);
    // What was typed comes back escaped (minijinja escapes `/` too).
    assert!(
        html.contains("Date de début : date non reconnue") && html.contains("<code>31&#x2f;02&#x2f;2026</code>"),
        "{html}"
    );
    assert!(!html.contains("--since") && !html.contains("Start date"), "{html}");
    assert!(html.contains("value=\"31&#x2f;02&#x2f;2026\""), "kept as typed");
    let (status, html) = logs(&server, &security, "until=demain&lang=en").await;
    assert_eq!(status, 400);
    assert!(html.contains("End date (excluded): date not recognised") && !html.contains("non reconnue"), "{html}");
    let (status, html) = logs(&server, &security, "since=05/12/2026&until=01/12/2026").await;
    assert_eq!(status, 400);
    assert!(html.contains("la date de fin doit être postérieure à la date de début"), "{html}");
}

async fn an_applied_annex_says_so_and_an_older_one_is_refused(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    let (habilitation, _) = signed_in(&server, HABILITATION).await;
    let url = server.url("/admin/partners/cc-girou/annex1");
    let send = |content: &'static str, transmitted: &'static str| {
        let (b, url) = (habilitation.clone(), url.clone());
        async move {
            let form = b.get(&url).send().await.expect("form").text().await.expect("html");
            let csrf = hidden(&form, "csrf").expect("csrf");
            let (ct, body) = multipart_dated(&csrf, "annexe1.csv", content, transmitted);
            let r = b.post(&url).header("content-type", ct).body(body).send().await.expect("upload");
            (r.status().as_u16(), r.text().await.expect("html"))
        }
    };

    // A plan with errors keeps the upload form, with the date as sent.
    let (status, html) = send(BAD_ANNEX, "01/02/2026").await;
    assert_eq!(status, 200);
    assert!(html.contains("enctype=\"multipart/form-data\"") && html.contains("name=\"file\""), "{html}");
    assert!(html.contains("name=\"transmitted\"") && html.contains("value=\"01/02/2026\""), "{html}");

    // A French transmission date; applied, the page says so and shows what was done.
    let (status, html) = send(ANNEX, "01/02/2026").await;
    assert_eq!(status, 200);
    let handle = hidden(&html, "handle").expect("Appliquer");
    let csrf = hidden(&html, "csrf").expect("csrf");
    let r = habilitation
        .post(server.url("/admin/partners/cc-girou/annex1/apply"))
        .form(&[("csrf", csrf.as_str()), ("handle", handle.as_str())])
        .send()
        .await
        .expect("apply");
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("html");
    assert!(html.contains("<title>Changements appliqués"), "{html}");
    assert!(html.contains("role=\"status\"") && html.contains("Date de transmission : 01/02/2026"), "{html}");
    assert!(html.contains("je.ndiaye@cc-girou.fr"), "the result: {html}");
    let current = server.app.store.current_annex1("cc-girou").await.expect("read").expect("annex");
    assert_eq!(current.transmitted_on, "2026-02-01", "stored in one spelling");

    // An older annex is refused on the form, nothing changed; the same day is not older.
    let (status, html) = send(BAD_ANNEX, "2026-01-15").await;
    assert_eq!(status, 400);
    assert!(html.contains("antérieure à l&#x27;annexe 1 en vigueur, transmise le 01&#x2f;02&#x2f;2026"), "{html}");
    assert!(html.contains("enctype=\"multipart/form-data\"") && html.contains("value=\"2026-01-15\""), "{html}");
    assert!(html.contains("aria-describedby=\"transmitted-hint upload-error\" aria-invalid=\"true\""), "{html}");
    let after = server.app.store.current_annex1("cc-girou").await.expect("read").expect("annex");
    assert_eq!((after.transmitted_on, after.checksum), ("2026-02-01".to_string(), current.checksum));
    let (status, _) = send(ANNEX, "01/02/2026").await;
    assert_eq!(status, 200, "a corrected annex of the same day");
    // A date that is none: said on the form, in the page's language.
    let (status, html) = send(ANNEX, "31/02/2026").await;
    assert_eq!(status, 400);
    assert!(html.contains("Date de transmission : date non reconnue"), "{html}");
}

async fn caf_roles_go_to_the_caf_staff_only(db: Db) {
    let server = TestServer::start(db).await;
    setup(&server).await;
    let roles_of = |email: &'static str| {
        let app = server.app.clone();
        async move {
            let id = app.store.account_by_email(email).await.expect("read").expect("account").id;
            app.store.account_roles(&id).await.expect("roles")
        }
    };
    for role in ["caf_habilitation", "caf_security"] {
        let e = coop_idp::admin::grant(&server.app, AGENT, role, "cli").await.expect_err("a partner's agent");
        assert!(matches!(e, coop_idp::admin::AdminError::NotCafStaff { .. }), "{e:?}");
        assert!(e.to_string().contains("n'est pas un compte de la Caf"), "{e}");
    }
    assert!(roles_of(AGENT).await.is_empty(), "nothing changed");
    let granted = server
        .app
        .store
        .query_events(&EventFilter { kind: Some("role_granted".into()), limit: 10, ..Default::default() })
        .await
        .expect("events");
    assert!(granted.is_empty(), "nothing recorded");
    // The other side: the Caf's own staff get them; a partner's manager its partner role.
    assert!(coop_idp::admin::grant(&server.app, SECURITY, "caf_habilitation", "cli").await.expect("Caf staff"));
    assert!(roles_of(SECURITY).await.contains(&"caf_habilitation".to_string()));
    assert!(coop_idp::admin::grant(&server.app, AGENT, "partner_habilitation", "cli").await.expect("own partner"));
    // Inviting a partner's agent as Caf staff is refused the same way.
    let staff = coop_idp::admin::StaffMember {
        email: AGENT,
        given_name: "Marie",
        family_name: "Dupont",
        function: "Coordinatrice",
        roles: &["caf_security".to_string()],
    };
    let e = coop_idp::admin::invite_staff(&server.app, staff, "cli").await.expect_err("an agent");
    assert!(matches!(e, coop_idp::admin::AdminError::NotCafStaff { .. }), "{e:?}");
    assert_eq!(roles_of(AGENT).await, ["partner_habilitation"]);
}

async fn caf_email_domains_narrow_the_caf_staff(db: Db) {
    let server = TestServer::start_with(db, &[("caf_email_domains", "caf.fr")]).await;
    setup(&server).await;
    server.add_account("stagiaire@ailleurs.fr", None).await;
    let e = coop_idp::admin::grant(&server.app, "stagiaire@ailleurs.fr", "caf_security", "cli").await;
    assert!(matches!(e, Err(coop_idp::admin::AdminError::NotCafStaff { .. })), "{e:?}");
    assert!(coop_idp::admin::grant(&server.app, HABILITATION, "caf_security", "cli").await.expect("at caf.fr"));
}
