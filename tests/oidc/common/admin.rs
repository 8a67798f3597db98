//! The cast of the console and admin API tests: two partners with signed
//! conventions, an agent of each, the partner's habilitation manager, and
//! the Caf's security officer and habilitation manager.

use super::server::TestServer;

pub const PARTNER: &str = "cc-girou";
pub const OTHER: &str = "ville-autre";
pub const SECURITY: &str = "rssi@caf.fr";
pub const HABILITATION: &str = "habilitations@caf.fr";
pub const PARTNER_MANAGER: &str = "claire.habil@cc-girou.fr";
pub const AGENT: &str = "marie.dupont@cc-girou.fr";
/// The agent of the other partner.
pub const OTHER_AGENT: &str = "agent@ville-autre.fr";

pub struct Cast {
    /// The subject of `AGENT`.
    pub agent: String,
}

/// Creates the cast on `server`, with their roles.
pub async fn setup(server: &TestServer) -> Cast {
    let agent = server.add_account(AGENT, Some((PARTNER, "CC du Girou"))).await;
    let manager = server.add_account(PARTNER_MANAGER, Some((PARTNER, "CC du Girou"))).await;
    server.add_account(OTHER_AGENT, Some((OTHER, "Ville Autre"))).await;
    let security = server.add_account(SECURITY, None).await;
    let habilitation = server.add_account(HABILITATION, None).await;
    server.grant_role(&security, "caf_security").await;
    server.grant_role(&habilitation, "caf_habilitation").await;
    server.grant_role(&manager, "partner_habilitation").await;
    for p in [PARTNER, OTHER] {
        coop_idp::provisioning::sign_convention(&server.app, p, "2026-01-05").await.expect("sign");
    }
    Cast { agent }
}

/// Every cell a spreadsheet may see in `text`, splitting on `;` or `,`,
/// honouring quotes or not, starts with anything but a formula.
pub fn assert_no_formula_cell(text: &str) {
    let text = text.trim_start_matches('\u{feff}');
    let starters = coop_idp::audit::export::FORMULA_STARTERS;
    for sep in [b';', b','] {
        for line in text.split(['\n', '\r']) {
            for cell in line.split(sep as char) {
                assert!(!cell.starts_with(starters), "naive split on {:?}: {cell:?}", sep as char);
            }
        }
        let mut reader =
            csv::ReaderBuilder::new().delimiter(sep).has_headers(false).flexible(true).from_reader(text.as_bytes());
        for record in reader.records() {
            let record = record.expect("a CSV record");
            for cell in record.iter() {
                assert!(!cell.starts_with(starters), "CSV parse on {:?}: {cell:?}", sep as char);
            }
        }
    }
}
