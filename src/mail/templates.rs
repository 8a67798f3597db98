//! Email texts (templates/mail/*), French first with the English below.

use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior, context};

use super::Mail;

pub enum MailKind<'a> {
    Activation {
        given_name: &'a str,
        link: &'a str,
        valid_hours: i64,
    },
    Reset {
        given_name: &'a str,
        link: &'a str,
        valid_minutes: i64,
    },
    PasswordChanged {
        given_name: &'a str,
        issuer: &'a str,
    },
    /// A passkey added to or removed from the account (issue 17).
    PasskeyChanged {
        given_name: &'a str,
        name: &'a str,
        added: bool,
        issuer: &'a str,
    },
    ReviewReminder {
        name: &'a str,
        partner_name: &'a str,
        deadline: &'a str,
        overdue: bool,
    },
    ReviewDigest {
        name: &'a str,
        partners: &'a [String],
    },
    Alert {
        name: &'a str,
        title_fr: &'a str,
        title_en: &'a str,
        cause_fr: &'a str,
        cause_en: &'a str,
        time: &'a str,
        seqs: &'a str,
    },
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // As the pages: printing something undefined fails the message.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        for (name, source) in [
            ("activation.txt", include_str!("../../templates/mail/activation.txt")),
            ("activation.html", include_str!("../../templates/mail/activation.html")),
            ("reset.txt", include_str!("../../templates/mail/reset.txt")),
            ("reset.html", include_str!("../../templates/mail/reset.html")),
            ("password_changed.txt", include_str!("../../templates/mail/password_changed.txt")),
            ("password_changed.html", include_str!("../../templates/mail/password_changed.html")),
            ("passkey_changed.txt", include_str!("../../templates/mail/passkey_changed.txt")),
            ("passkey_changed.html", include_str!("../../templates/mail/passkey_changed.html")),
            ("review_reminder.txt", include_str!("../../templates/mail/review_reminder.txt")),
            ("review_reminder.html", include_str!("../../templates/mail/review_reminder.html")),
            ("review_digest.txt", include_str!("../../templates/mail/review_digest.txt")),
            ("review_digest.html", include_str!("../../templates/mail/review_digest.html")),
            ("alert.txt", include_str!("../../templates/mail/alert.txt")),
            ("alert.html", include_str!("../../templates/mail/alert.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "mail template does not compile");
            }
        }
        env
    })
}

pub fn render(recipient: &str, kind: MailKind) -> Result<Mail, minijinja::Error> {
    let (name, subject, ctx) = match kind {
        MailKind::Activation { given_name, link, valid_hours } => (
            "activation",
            "Coopération : créez votre mot de passe / create your password",
            context! { given_name, link, valid_hours },
        ),
        MailKind::Reset { given_name, link, valid_minutes } => (
            "reset",
            "Coopération : renouvelez votre mot de passe / renew your password",
            context! { given_name, link, valid_minutes },
        ),
        MailKind::PasswordChanged { given_name, issuer } => (
            "password_changed",
            "Coopération : votre mot de passe a été modifié / your password was changed",
            context! { given_name, issuer },
        ),
        MailKind::PasskeyChanged { given_name, name, added, issuer } => (
            "passkey_changed",
            if added {
                "Coopération : clé d'accès ajoutée / passkey added"
            } else {
                "Coopération : clé d'accès retirée / passkey removed"
            },
            context! { given_name, name, added, issuer },
        ),
        MailKind::ReviewReminder { name, partner_name, deadline, overdue } => (
            "review_reminder",
            if overdue {
                "Coopération : revue annuelle des habilitations en retard / annual review overdue"
            } else {
                "Coopération : revue annuelle des habilitations à faire / annual review due"
            },
            context! { name, partner_name, deadline, overdue },
        ),
        MailKind::ReviewDigest { name, partners } => (
            "review_digest",
            "Coopération : partenaires en retard de revue annuelle / partners late for their annual review",
            context! { name, partners },
        ),
        MailKind::Alert { name, title_fr, title_en, cause_fr, cause_en, time, seqs } => (
            "alert",
            "Coopération : alerte de sécurité / security alert",
            context! { name, title_fr, title_en, cause_fr, cause_en, time, seqs },
        ),
    };
    let env = environment();
    let text = env.get_template(&format!("{name}.txt"))?.render(&ctx)?;
    let html = env.get_template(&format!("{name}.html"))?.render(&ctx)?;
    Ok(Mail { recipient: recipient.to_string(), subject: subject.to_string(), text, html })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_mail_carries_the_link_in_both_parts() {
        let m = render(
            "a@b.fr",
            MailKind::Activation { given_name: "Marie", link: "https://idp/activate?token=T", valid_hours: 72 },
        )
        .expect("render");
        assert!(m.text.contains("https://idp/activate?token=T"));
        // The HTML part is auto-escaped (`/` as `&#x2f;`), which browsers decode.
        assert!(m.html.contains("activate?token=T"));
        assert!(m.text.contains("72"));
        assert!(m.subject.contains("mot de passe"));
    }

    #[test]
    fn confirmation_mail_has_no_link_token() {
        let m =
            render("a@b.fr", MailKind::PasswordChanged { given_name: "Marie", issuer: "https://idp" }).expect("render");
        assert!(!m.text.contains("token="));
    }

    /// Every kind, both parts, renders (in strict mode: no variable a
    /// template prints is missing from what its kind passes).
    #[test]
    fn every_mail_renders() {
        let partners = ["CC du Girou".to_string()];
        for overdue in [false, true] {
            let kinds = [
                MailKind::Activation { given_name: "Marie", link: "https://idp/activate?token=T", valid_hours: 72 },
                MailKind::Reset { given_name: "Marie", link: "https://idp/password/reset?token=T", valid_minutes: 30 },
                MailKind::PasswordChanged { given_name: "Marie", issuer: "https://idp" },
                MailKind::ReviewReminder {
                    name: "Marie",
                    partner_name: "CC du Girou",
                    deadline: "2026-01-01",
                    overdue,
                },
                MailKind::ReviewDigest { name: "Marie", partners: &partners },
                MailKind::Alert {
                    name: "Marie",
                    title_fr: "Alerte",
                    title_en: "Alert",
                    cause_fr: "Cause",
                    cause_en: "Cause",
                    time: "2025-01-02T03:04:05Z",
                    seqs: "1, 2",
                },
            ];
            for kind in kinds {
                let m = render("a@b.fr", kind).expect("render");
                assert!(!m.text.trim().is_empty() && !m.html.trim().is_empty(), "{}", m.subject);
            }
        }
    }
}
