//! User-facing text: French first, English on request.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    Fr,
    En,
}

impl Locale {
    pub fn code(self) -> &'static str {
        match self {
            Locale::Fr => "fr",
            Locale::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let primary = s.trim().split(['-', '_', ';']).next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "fr" => Some(Locale::Fr),
            "en" => Some(Locale::En),
            _ => None,
        }
    }

    /// The first supported tag of a space-separated `ui_locales`, or of an
    /// `Accept-Language` header (in the order given; q-values are rarely used
    /// to reorder these two languages).
    pub fn first_supported(list: &str) -> Option<Self> {
        list.split([' ', ',']).filter(|s| !s.is_empty()).find_map(Locale::parse)
    }

    /// Chooses the page language: explicit switch, then the remembered
    /// choice, then `ui_locales`, then `Accept-Language`; French by default.
    pub fn choose(switch: Option<&str>, cookie: Option<&str>, ui_locales: Option<&str>, accept: Option<&str>) -> Self {
        switch
            .and_then(Locale::parse)
            .or_else(|| cookie.and_then(Locale::parse))
            .or_else(|| ui_locales.and_then(Locale::first_supported))
            .or_else(|| accept.and_then(Locale::first_supported))
            .unwrap_or(Locale::Fr)
    }

    pub fn other(self) -> Self {
        match self {
            Locale::Fr => Locale::En,
            Locale::En => Locale::Fr,
        }
    }
}

/// (key, French, English).
const TEXTS: &[(&str, &str, &str)] = &[
    ("service_tagline", "Service d'identification des partenaires", "Partners' identity service"),
    ("skiplinks_label", "Accès rapide", "Quick access"),
    ("skip_to_content", "Aller au contenu", "Skip to content"),
    ("skip_to_footer", "Aller au pied de page", "Skip to footer"),
    ("switch_language", "English", "Français"),
    ("switch_language_label", "Read this page in English", "Lire cette page en français"),
    ("signin_title", "Se connecter", "Sign in"),
    (
        "signin_intro",
        "Connectez-vous avec votre adresse électronique professionnelle.",
        "Sign in with your professional email address.",
    ),
    ("signin_for", "pour accéder à", "to reach"),
    ("email_label", "Adresse électronique professionnelle", "Professional email address"),
    ("email_hint", "Format attendu : nom@domaine.fr", "Expected format: name@domain.fr"),
    ("password_label", "Mot de passe", "Password"),
    ("signin_button", "Se connecter", "Sign in"),
    ("forgot_password", "Mot de passe oublié ?", "Forgot your password?"),
    ("signin_failed", "Adresse électronique ou mot de passe incorrect.", "Incorrect email address or password."),
    ("error_summary", "Le formulaire contient une erreur", "The form has an error"),
    ("signed_in_title", "Vous êtes connecté(e)", "You are signed in"),
    (
        "signed_in_text",
        "Vous pouvez retourner à l'application Coopération.",
        "You can go back to the Coopération application.",
    ),
    ("signed_out_title", "Vous êtes déconnecté(e)", "You are signed out"),
    (
        "signed_out_text",
        "Votre session est terminée. Vous pouvez fermer cette page.",
        "Your session has ended. You may close this page.",
    ),
    ("logout_confirm_title", "Se déconnecter ?", "Sign out?"),
    (
        "logout_confirm_text",
        "Une application demande à vous déconnecter. Confirmez-vous ?",
        "An application asks to sign you out. Do you confirm?",
    ),
    ("logout_confirm_button", "Me déconnecter", "Sign me out"),
    ("error_title", "Erreur", "Error"),
    ("error_back", "Retournez à l'application et recommencez.", "Go back to the application and try again."),
    ("err_repeated_parameter", "La demande contient un paramètre répété.", "The request repeats a parameter."),
    (
        "err_missing_client_id",
        "La demande ne précise pas l'application (client_id).",
        "The request does not name the application (client_id).",
    ),
    ("err_unknown_client", "Cette application n'est pas enregistrée.", "This application is not registered."),
    (
        "err_missing_redirect_uri",
        "La demande ne précise pas l'adresse de retour (redirect_uri).",
        "The request has no return address (redirect_uri).",
    ),
    (
        "err_unregistered_redirect_uri",
        "L'adresse de retour n'est pas enregistrée pour cette application.",
        "The return address is not registered for this application.",
    ),
    (
        "err_parameter_too_long",
        "La demande contient un paramètre trop long (client_id ou redirect_uri).",
        "The request holds a parameter that is too long (client_id or redirect_uri).",
    ),
    ("err_request_expired", "Cette demande de connexion a expiré.", "This sign-in request has expired."),
    (
        "err_csrf",
        "Le formulaire a expiré. Rechargez la page et recommencez.",
        "The form has expired. Reload the page and try again.",
    ),
    (
        "err_invalid_id_token_hint",
        "La demande de déconnexion n'est pas valide (id_token_hint).",
        "The sign-out request is not valid (id_token_hint).",
    ),
    (
        "err_client_mismatch",
        "La demande de déconnexion mentionne deux applications différentes.",
        "The sign-out request names two different applications.",
    ),
    (
        "err_unregistered_post_logout_uri",
        "L'adresse de retour après déconnexion n'est pas enregistrée.",
        "The post-logout return address is not registered.",
    ),
    ("err_not_found", "Cette page n'existe pas.", "This page does not exist."),
    (
        "err_internal",
        "Une erreur interne est survenue. Réessayez plus tard.",
        "An internal error occurred. Try again later.",
    ),
    (
        "err_unavailable",
        "Le service est momentanément indisponible. Réessayez dans quelques instants.",
        "The service is temporarily unavailable. Try again in a moment.",
    ),
    (
        "signin_throttled",
        "Trop de tentatives infructueuses. Réessayez dans quelques minutes, ou renouvelez votre mot de passe avec « Mot de passe oublié ? ».",
        "Too many failed attempts. Try again in a few minutes, or renew your password with “Forgot your password?”.",
    ),
    ("change_title", "Changer votre mot de passe", "Change your password"),
    ("pw_current_label", "Mot de passe actuel", "Current password"),
    ("pw_current_wrong", "Le mot de passe actuel est incorrect.", "The current password is incorrect."),
    ("changed_title", "Votre mot de passe est changé", "Your password is changed"),
    (
        "err_signin_first",
        "Connectez-vous d'abord pour changer votre mot de passe.",
        "Sign in first to change your password.",
    ),
    ("pw_for_account", "Compte :", "Account:"),
    ("activate_title", "Créer votre mot de passe", "Create your password"),
    ("reset_title", "Renouveler votre mot de passe", "Renew your password"),
    (
        "pw_rules_intro",
        "Votre mot de passe doit respecter toutes ces règles :",
        "Your password must follow all these rules:",
    ),
    (
        "pw_rule_length",
        "au moins 8 caractères (les phrases de passe longues sont bienvenues) ;",
        "at least 8 characters (long passphrases are welcome);",
    ),
    ("pw_rule_upper", "au moins une lettre majuscule ;", "at least one uppercase letter;"),
    ("pw_rule_lower", "au moins une lettre minuscule ;", "at least one lowercase letter;"),
    ("pw_rule_digit", "au moins un chiffre ;", "at least one digit;"),
    (
        "pw_rule_special",
        "au moins un caractère spécial (ponctuation ou symbole, par exemple ! ? - € @) ;",
        "at least one special character (punctuation or symbol, e.g. ! ? - € @);",
    ),
    (
        "pw_rule_personal",
        "ni votre nom, ni votre prénom, ni votre adresse électronique ;",
        "neither your names nor your email address;",
    ),
    ("pw_rule_common", "pas un mot de passe courant ou déjà divulgué.", "not a common or already leaked password."),
    ("pw_new_label", "Nouveau mot de passe", "New password"),
    ("pw_confirm_label", "Confirmez le mot de passe", "Confirm the password"),
    ("pw_submit", "Enregistrer le mot de passe", "Save the password"),
    (
        "pw_too_short",
        "Le mot de passe doit contenir au moins 8 caractères.",
        "The password must have at least 8 characters.",
    ),
    (
        "pw_too_long",
        "Le mot de passe ne doit pas dépasser 256 caractères.",
        "The password must not exceed 256 characters.",
    ),
    (
        "pw_no_uppercase",
        "Le mot de passe doit contenir au moins une lettre majuscule.",
        "The password must contain an uppercase letter.",
    ),
    (
        "pw_no_lowercase",
        "Le mot de passe doit contenir au moins une lettre minuscule.",
        "The password must contain a lowercase letter.",
    ),
    ("pw_no_digit", "Le mot de passe doit contenir au moins un chiffre.", "The password must contain a digit."),
    (
        "pw_no_special",
        "Le mot de passe doit contenir au moins un caractère spécial.",
        "The password must contain a special character.",
    ),
    (
        "pw_invisible",
        "Le mot de passe ne doit pas contenir de caractère invisible (espace sans largeur, trait d'union conditionnel, caractère de contrôle, de mise en forme ou à usage privé).",
        "The password must not contain invisible characters (zero-width space, soft hyphen, control, formatting or private-use characters).",
    ),
    (
        "pw_personal",
        "Le mot de passe ne doit contenir ni votre nom, ni votre prénom, ni votre adresse électronique.",
        "The password must not contain your names or your email address.",
    ),
    (
        "pw_common",
        "Ce mot de passe est trop courant ou a déjà été divulgué : choisissez-en un autre.",
        "This password is too common or already leaked: choose another.",
    ),
    ("pw_mismatch", "Les deux mots de passe ne sont pas identiques.", "The two passwords differ."),
    ("activated_title", "Votre mot de passe est créé", "Your password is created"),
    (
        "activated_text",
        "Votre accès est activé. Connectez-vous depuis l'application Coopération avec votre adresse électronique et ce mot de passe.",
        "Your access is active. Sign in from the Coopération application with your email address and this password.",
    ),
    ("reset_done_title", "Votre mot de passe est renouvelé", "Your password is renewed"),
    (
        "reset_done_text",
        "Toutes vos sessions ont été fermées. Connectez-vous de nouveau avec votre nouveau mot de passe.",
        "All your sessions were closed. Sign in again with your new password.",
    ),
    ("link_unknown", "Ce lien n'est pas valide.", "This link is not valid."),
    (
        "link_used",
        "Ce lien a déjà été utilisé : il ne fonctionne qu'une fois.",
        "This link was already used: it works only once.",
    ),
    ("link_expired", "Ce lien a expiré.", "This link has expired."),
    (
        "link_superseded",
        "Ce lien a été remplacé par un lien plus récent : utilisez le dernier message reçu.",
        "This link was replaced by a newer one: use the latest message you received.",
    ),
    (
        "link_help_activation",
        "Pour obtenir un nouveau lien d'activation, adressez-vous au responsable des habilitations de votre structure.",
        "To get a new activation link, ask your organisation's habilitation manager.",
    ),
    (
        "link_help_reset",
        "Vous pouvez demander un nouveau lien depuis la page « Mot de passe oublié ? ».",
        "You can ask for a new link from the “Forgot your password?” page.",
    ),
    ("forgot_title", "Mot de passe oublié", "Forgotten password"),
    (
        "forgot_intro",
        "Indiquez votre adresse électronique professionnelle : si elle correspond à un compte actif, vous recevrez un lien pour renouveler votre mot de passe.",
        "Enter your professional email address: if it matches an active account, you will receive a link to renew your password.",
    ),
    ("forgot_submit", "Recevoir un lien", "Send me a link"),
    (
        "forgot_sent",
        "Si cette adresse correspond à un compte actif, un message contenant un lien à usage unique vient de lui être envoyé.",
        "If this address matches an active account, a message with a single-use link has just been sent to it.",
    ),
    ("back_to_signin", "Retour à la connexion", "Back to sign-in"),
    (
        "footer_text",
        "Service d'identification de la plateforme Coopération",
        "Identity service of the Coopération platform",
    ),
];

/// Column headers of the connection-log CSV export, `csv_col_` + the field
/// name of `audit::export::CSV_COLUMNS`.
const CSV_HEADERS: &[(&str, &str, &str)] = &[
    ("csv_col_seq", "N°", "No."),
    ("csv_col_time", "Date (UTC)", "Time (UTC)"),
    ("csv_col_kind", "Type d'événement", "Event kind"),
    ("csv_col_outcome", "Résultat", "Outcome"),
    ("csv_col_email", "Adresse électronique", "Email address"),
    ("csv_col_account_id", "Compte", "Account"),
    ("csv_col_partner_id", "Partenaire", "Partner"),
    ("csv_col_client_id", "Application", "Client"),
    ("csv_col_ip", "Adresse IP", "IP address"),
    ("csv_col_user_agent", "Navigateur (user agent)", "User agent"),
    ("csv_col_actor", "Auteur", "Actor"),
    ("csv_col_details", "Détails", "Details"),
];

/// The headers of the connection-log CSV in `locale`, in the order of
/// `audit::export::CSV_COLUMNS`.
pub fn csv_headers(locale: Locale) -> [&'static str; 12] {
    crate::audit::export::CSV_COLUMNS.map(|c| text(locale, &format!("csv_col_{c}")))
}

/// The shared texts and those of the second-factor pages.
fn all_texts() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    TEXTS
        .iter()
        .chain(super::second_factor::TEXTS.iter())
        .chain(super::console::TEXTS.iter())
        .chain(super::statement::TEXTS.iter())
        .chain(CSV_HEADERS.iter())
}

pub fn texts(locale: Locale) -> BTreeMap<&'static str, &'static str> {
    all_texts().map(|(k, fr, en)| (*k, if locale == Locale::Fr { *fr } else { *en })).collect()
}

pub fn text(locale: Locale, key: &str) -> &'static str {
    all_texts()
        .find(|(k, _, _)| *k == key)
        .map(|(_, fr, en)| if locale == Locale::Fr { *fr } else { *en })
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_order_and_default() {
        assert_eq!(Locale::choose(None, None, None, None), Locale::Fr);
        assert_eq!(Locale::choose(None, None, None, Some("en-GB,en;q=0.8")), Locale::En);
        assert_eq!(Locale::choose(None, None, Some("de en"), Some("fr")), Locale::En);
        assert_eq!(Locale::choose(None, Some("fr"), Some("en"), None), Locale::Fr);
        assert_eq!(Locale::choose(Some("en"), Some("fr"), None, None), Locale::En);
        assert_eq!(Locale::choose(None, None, None, Some("de, es")), Locale::Fr);
    }

    #[test]
    fn every_key_has_both_languages() {
        for (k, fr, en) in all_texts() {
            assert!(!fr.is_empty() && !en.is_empty(), "{k}");
        }
    }

    #[test]
    fn every_csv_column_has_a_header_in_both_languages() {
        for locale in [Locale::Fr, Locale::En] {
            let headers = csv_headers(locale);
            assert!(headers.iter().all(|h| !h.is_empty()), "{headers:?}");
            let distinct: std::collections::BTreeSet<_> = headers.iter().collect();
            assert_eq!(distinct.len(), headers.len(), "{headers:?}");
        }
        assert_eq!(csv_headers(Locale::Fr)[2], "Type d'événement");
        assert_eq!(csv_headers(Locale::En)[2], "Event kind");
    }

    /// The second-factor and console texts live beside their pages: a key
    /// defined twice would silently shadow the other.
    #[test]
    fn every_key_is_defined_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (k, _, _) in all_texts() {
            assert!(seen.insert(*k), "{k} is defined twice");
        }
    }
}
