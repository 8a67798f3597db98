//! The attestation of destruction (R20, convention art. 2.1): from the
//! destruction records, a PDF for people and a compact JWS for machines,
//! signed with the server's key so that anyone holding the published JWKS can
//! check it. The JWS payload states the same facts as the PDF and the PDF's
//! SHA-256, so altering either shows.

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pdf::{Paragraph, Style, render};
use super::{EMAIL_HMAC_KEY_FILE, email_hmac};
use crate::app::App;
use crate::clock::{Millis, rfc3339_ms};
use crate::crypto::{b64url, sha256};
use crate::error::{AppError, AppResult};
use crate::store::retention::DestructionRow;

/// The `typ` of an attestation JWS.
pub const TYP: &str = "destruction-attestation+jwt";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttestedDestruction {
    pub category: String,
    pub destroyed_at: String,
    pub account_id: Option<String>,
    /// The `purge` record of the connection log that states it.
    pub purge_seq: i64,
    pub details: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttestationClaims {
    pub iss: String,
    pub iat: i64,
    pub partner_id: String,
    pub partner_name: String,
    /// The person concerned, when the attestation is about one person.
    pub email: Option<String>,
    pub destructions: Vec<AttestedDestruction>,
    /// SHA-256 of the PDF, base64url.
    pub pdf_sha256: String,
}

pub struct Attestation {
    pub pdf: Vec<u8>,
    pub jws: String,
    pub claims: AttestationClaims,
}

/// Builds the attestation for a partner, or for one of its people.
pub async fn build(app: &App, partner_id: &str, email: Option<&str>) -> AppResult<Attestation> {
    let partner = app
        .store
        .partner(partner_id)
        .await?
        .ok_or_else(|| AppError::Invalid(format!("partenaire inconnu (unknown partner) `{partner_id}`")))?;
    let email = email.map(|e| e.trim().to_lowercase());
    let hmac = match &email {
        Some(e) => {
            let key = crate::keys::load_or_create_secret(&app.config.keys_dir, EMAIL_HMAC_KEY_FILE)?;
            Some(email_hmac(&key, e))
        }
        None => None,
    };
    let rows = app.store.destructions(partner_id, hmac.as_deref()).await?;
    if rows.is_empty() {
        return Err(AppError::Invalid(match &email {
            Some(e) => format!(
                "aucune destruction enregistrée pour {e} chez le partenaire `{partner_id}` \
                 (no destruction recorded for this person)"
            ),
            None => {
                format!("aucune destruction enregistrée pour le partenaire `{partner_id}` (no destruction recorded)")
            }
        }));
    }
    let now = app.clock.now_ms();
    let destructions: Vec<AttestedDestruction> = rows.iter().map(attested).collect();
    let pdf = render(
        "Attestation de destruction de données",
        &paragraphs(&app.config.issuer_str(), &partner.name, partner_id, email.as_deref(), &rows, now),
    );
    let claims = AttestationClaims {
        iss: app.config.issuer_str(),
        iat: now / 1000,
        partner_id: partner_id.to_string(),
        partner_name: partner.name,
        email,
        destructions,
        pdf_sha256: b64url(&sha256(&pdf)),
    };
    let jws = app.keys.current().sign(Algorithm::RS256, TYP, &claims)?;
    Ok(Attestation { pdf, jws, claims })
}

fn attested(r: &DestructionRow) -> AttestedDestruction {
    AttestedDestruction {
        category: r.category.clone(),
        destroyed_at: rfc3339_ms(r.destroyed_at),
        account_id: r.account_id.clone(),
        purge_seq: r.purge_seq,
        details: serde_json::from_str(&r.details).unwrap_or(Value::Null),
    }
}

/// Checks an attestation: the JWS verifies with one of our keys and states
/// the PDF's SHA-256. Returns the attested facts.
pub fn verify(app: &App, pdf: &[u8], jws: &str) -> Result<AttestationClaims, String> {
    let (payload, _kid) = app.keys.verify_signed(jws).ok_or("signature invalide (invalid signature)")?;
    let claims: AttestationClaims =
        serde_json::from_value(payload).map_err(|_| "pas une attestation (not an attestation)".to_string())?;
    if claims.pdf_sha256 != b64url(&sha256(pdf)) {
        return Err("le PDF ne correspond pas à la signature (the PDF does not match)".into());
    }
    Ok(claims)
}

/// `12/03/2027 à 14:05 UTC`.
pub fn french_time(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:02}/{:02}/{} à {:02}:{:02} UTC", t.day(), t.month() as u8, t.year(), t.hour(), t.minute())
}

fn category_text(r: &DestructionRow) -> String {
    let details: Value = serde_json::from_str(&r.details).unwrap_or(Value::Null);
    let account = r.account_id.as_deref().unwrap_or("-");
    match r.category.as_str() {
        "account_data" => format!(
            "Données du compte utilisateur {account} : mot de passe, sessions (adresses IP et navigateurs), \
             jetons, liens d'activation et de renouvellement, rôles, courriels."
        ),
        "habilitation_record" => format!(
            "Fiche d'habilitation du compte {account} (nom, prénom(s), adresse électronique professionnelle, \
             qualité/fonction, dates), demande de fin d'habilitation du {} ; données du compte utilisateur \
             comprises.",
            details["closure_requested_on"].as_str().unwrap_or("-")
        ),
        "annexes" => format!(
            "Annexe 1 ({} document) et annexe 2 ({} document) de la convention, terminée le {}.",
            details["annex1"].as_u64().unwrap_or(0),
            details["annex2"].as_u64().unwrap_or(0),
            details["convention_ended_on"].as_str().unwrap_or("-")
        ),
        "connection_log" => format!(
            "Journal des connexions : {} enregistrement(s) antérieur(s) au {}.",
            details["records"].as_i64().unwrap_or(0),
            details["before"].as_str().unwrap_or("-")
        ),
        other => format!("{other} ({account})"),
    }
}

fn paragraphs(
    issuer: &str,
    partner_name: &str,
    partner_id: &str,
    email: Option<&str>,
    rows: &[DestructionRow],
    now: Millis,
) -> Vec<Paragraph> {
    let mut out = vec![
        Paragraph::new(Style::Small, "Plateforme « Coopération » — Caisse d'allocations familiales"),
        Paragraph::new(Style::Title, "Attestation de destruction de données à caractère personnel"),
        Paragraph::new(
            Style::Body,
            format!(
                "En application de l'article 2.1 de la convention d'adhésion à la plateforme « Coopération », \
                 la Caf atteste que les données suivantes du partenaire « {partner_name} » (identifiant \
                 {partner_id}){} ont été détruites, aux dates indiquées.",
                email
                    .map(|e| format!(", concernant la personne dont l'adresse électronique professionnelle est {e},"))
                    .unwrap_or_default()
            ),
        ),
        Paragraph::new(Style::Heading, "Données détruites"),
    ];
    for r in rows {
        out.push(Paragraph::new(
            Style::Body,
            format!("• Le {} : {} (purge n° {}).", french_time(r.destroyed_at), category_text(r), r.purge_seq),
        ));
    }
    out.push(Paragraph::new(Style::Heading, "Vérification"));
    out.push(Paragraph::new(
        Style::Body,
        format!(
            "Cette attestation est accompagnée d'un fichier de signature (.jws) : une signature JWS (RFC 7515) \
             établie avec la clé de signature du serveur {issuer}. Elle porte l'empreinte SHA-256 de ce document \
             et les faits attestés ; elle se vérifie avec les clés publiques publiées à {issuer}/jwks."
        ),
    ));
    out.push(Paragraph::new(Style::Small, format!("Document établi le {}.", french_time(now))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_time_is_day_first_in_utc() {
        // 2027-03-12T14:05:09Z
        assert_eq!(french_time(1_804_860_309_000), "12/03/2027 à 14:05 UTC");
    }
}
