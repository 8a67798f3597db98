//! Retention: `purge` and `attestation`.

use std::path::Path;

use serde_json::json;

use super::{CliError, open, print_line, print_pretty};
use crate::config::Config;

pub(super) async fn purge(dry_run: bool, config: Config) -> Result<(), CliError> {
    let app = open(config).await?;
    print_pretty(&crate::retention::purge(&app, dry_run, "cli").await?);
    Ok(())
}

/// Writes `attestation-destruction-PARTNER[-WHO]-DAY.pdf` and its `.jws`
/// into `out`.
pub(super) async fn attestation(
    partner: &str,
    email: Option<&str>,
    out: &Path,
    config: Config,
) -> Result<(), CliError> {
    let app = open(config).await?;
    let a = crate::retention::attestation::build(&app, partner, email).await?;
    let day = crate::dates::format_iso(app.clock.today());
    // The person's file name carries a hash prefix, never the address.
    let who = match email {
        Some(e) => format!("-{}", &crate::crypto::hash_secret(&e.trim().to_lowercase())[..8]),
        None => String::new(),
    };
    std::fs::create_dir_all(out).map_err(|e| CliError::file(format!("--out {}", out.display()), e))?;
    let pdf = out.join(format!("attestation-destruction-{partner}{who}-{day}.pdf"));
    let jws = out.join(format!("attestation-destruction-{partner}{who}-{day}.pdf.jws"));
    std::fs::write(&pdf, &a.pdf).map_err(|e| CliError::file(pdf.display(), e))?;
    std::fs::write(&jws, &a.jws).map_err(|e| CliError::file(jws.display(), e))?;
    print_line(json!({
        "pdf": pdf.display().to_string(),
        "jws": jws.display().to_string(),
        "destructions": a.claims.destructions.len(),
        "pdf_sha256": a.claims.pdf_sha256,
    }));
    Ok(())
}
