//! A newcomer's first hour (issue 16): the home page at `/`, and the
//! set-password checklist ticking each rule as the password is typed, with
//! an error summary that agrees in number with its errors.

use coop_idp::provisioning::invite::{Invitation, invite};
use coop_idp::provisioning::{NewPartner, add_partner};
use fantoccini::Locator;

use crate::common::{Db, TestServer};
use crate::driver::Theme;
use crate::{EMAIL, FIRST_PASSWORD, PARTNER, driver, mailed_link};

/// The rules of the checklist the script ticks (templates/password_form.html).
const RULES: [&str; 5] = ["length", "upper", "lower", "digit", "special"];

/// The rules shown as met, in the order of the page.
async fn met(b: &driver::Browser) -> Vec<String> {
    let mut out = Vec::new();
    for rule in RULES {
        if b.exists(&format!("#password-rules li[data-rule={rule}].coop-rule--met")).await {
            out.push(rule.to_string());
        }
    }
    out
}

/// The error summary's title and how many errors it lists.
async fn summary(b: &driver::Browser) -> (String, usize) {
    let title = b.client.find(Locator::Id("error-summary-title")).await.expect("summary title");
    let items = b.client.find_all(Locator::Css("[role=alert] li")).await.expect("summary items");
    (title.text().await.expect("title text"), items.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_checklist_follows_the_typing_and_the_summary_counts_neutral_theme() {
    the_password_checklist_follows_the_typing_and_the_summary_counts(Theme::Neutral).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_checklist_follows_the_typing_and_the_summary_counts_dsfr_theme() {
    the_password_checklist_follows_the_typing_and_the_summary_counts(Theme::Dsfr).await;
}

async fn the_password_checklist_follows_the_typing_and_the_summary_counts(theme: Theme) {
    let test = format!("the_password_checklist_follows_the_typing_and_the_summary_counts ({})", theme.code());
    let Some(mut b) = driver::start(&test, theme).await else { return };
    let server = TestServer::start_with(Db::Sqlite, &[("theme", theme.code())]).await;

    // The bare address: a page that says where to go, not a 404.
    b.goto(&server.url("/")).await;
    b.wait_title("Service d'identification de Coopération").await;
    assert!(b.exists("main a[href='/.well-known/openid-configuration']").await);
    assert!(b.exists("main a[href='/admin']").await);
    b.check_page("home", "fr").await;

    add_partner(
        &server.app,
        NewPartner { id: PARTNER, name: "CC du Girou", convention_signed: Some("2026-01-01"), email_domains: &[] },
    )
    .await
    .expect("partner");
    let invitation =
        Invitation { partner_id: PARTNER, email: EMAIL, given_name: "Marie", family_name: "Dupont", function: "Agent" };
    invite(&server.app, invitation).await.expect("invitation");
    let link = mailed_link(&server, EMAIL, &format!("{}?token=", server.url("/activate")), 1).await;
    b.goto(&link).await;
    b.wait_title("Créer votre mot de passe").await;

    // Every rule at once, none met before typing; each ticked as typed.
    assert_eq!(met(&b).await, Vec::<String>::new());
    b.fill("password", "abc").await;
    assert_eq!(met(&b).await, ["lower"]);
    b.fill("password", "abcdefgH7").await;
    assert_eq!(met(&b).await, ["length", "upper", "lower", "digit"]);
    let state = b.client.find(Locator::Css("li[data-rule=special] .coop-rule-state")).await.expect("state");
    assert_eq!(state.text().await.expect("text"), "(pas encore respectée)", "the state in words");
    b.fill("password", FIRST_PASSWORD).await;
    assert_eq!(met(&b).await, RULES);
    b.check_page("password-checklist", "fr").await;

    // One error: one, in the singular.
    b.fill("confirmation", "Autre-Chose-8-Granit").await;
    b.submit("Erreur : Créer votre mot de passe").await;
    assert_eq!(summary(&b).await, ("Le formulaire contient 1 erreur".to_string(), 1));

    // Three errors (no uppercase, no digit, no special character): three.
    b.fill("password", "tuilesvertes").await;
    b.fill("confirmation", "tuilesvertes").await;
    b.submit("Erreur : Créer votre mot de passe").await;
    let (title, count) = summary(&b).await;
    assert!(count >= 3, "{title}");
    assert_eq!(title, format!("Le formulaire contient {count} erreurs"));
    b.check_page("password-errors-counted", "fr").await;
    let checked = b.finish().await;
    assert_eq!(checked.len(), 3);
}
