//! Annex 1 from the console: the upload form, the plan of the dry run with
//! its problems line by line, and — for a Caf habilitation manager, when
//! the plan has no error — "Appliquer", which applies the very file checked
//! (kept by `admin::annex1` under a single-use handle).

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};

use super::{PageResult, refusal};
use crate::admin::AdminError;
use crate::admin::actions::visible_partner;
use crate::admin::annex1::{self, AnnexFile};
use crate::error::AppError;
use crate::provisioning::annex1::apply::OlderAnnex;
use crate::provisioning::annex1::plan::Plan;
use crate::store::partners::PartnerRow;
use crate::web::extract::{AdminPage, Administrator, CheckedForm, csrf_refusal, roles};
use crate::web::i18n::text;
use crate::web::{AppState, pages};

/// The file, held to the parser's own limit, and the form's other fields.
pub(super) const MAX_UPLOAD_BYTES: usize = crate::provisioning::annex1::limits::MAX_FILE_BYTES + 64 * 1024;

fn form_path(p: &PartnerRow) -> String {
    format!("/admin/partners/{}/annex1", p.id)
}

pub(super) async fn form(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Habilitation>,
    Path(id): Path<String>,
) -> PageResult {
    let p = visible_partner(&app, &c.admin, &id).await.map_err(|e| refusal(e, c.locale, "err_not_found"))?;
    let ctx = context! { partner_id => p.id.clone(), partner_name => p.name.clone(), error => None::<String> };
    Ok(c.render(&app, StatusCode::OK, "admin/annex1.html", &form_path(&p), ctx))
}

/// Which field of the upload form an error is about.
#[derive(Clone, Copy)]
enum Field {
    File,
    Transmitted,
}

/// The parts of the upload form.
struct Upload {
    csrf: Option<String>,
    file_name: String,
    transmitted: Option<String>,
    bytes: Vec<u8>,
}

async fn read_upload(mut form: Multipart) -> Result<Upload, axum::extract::multipart::MultipartError> {
    let mut up = Upload { csrf: None, file_name: "annexe1.csv".into(), transmitted: None, bytes: Vec::new() };
    while let Some(field) = form.next_field().await? {
        match field.name().unwrap_or("") {
            "csrf" => up.csrf = Some(field.text().await?),
            "transmitted" => {
                let t = field.text().await?;
                up.transmitted = Some(t.trim().to_string()).filter(|t| !t.is_empty());
            }
            "file" => {
                if let Some(n) = field.file_name().filter(|n| !n.is_empty()) {
                    up.file_name = n.chars().take(200).collect();
                }
                up.bytes = field.bytes().await?.to_vec();
            }
            _ => {}
        }
    }
    Ok(up)
}

/// The form again, saying what is wrong with the file sent (or its date),
/// with the date as typed.
fn form_error(
    app: &AppState,
    c: &AdminPage,
    p: &PartnerRow,
    field: Field,
    error: String,
    transmitted: Option<&str>,
) -> Response {
    let ctx = context! {
        partner_id => p.id.clone(),
        partner_name => p.name.clone(),
        error => error,
        error_field => match field { Field::File => "file", Field::Transmitted => "transmitted" },
        transmitted => transmitted,
    };
    c.render(app, StatusCode::BAD_REQUEST, "admin/annex1.html", &form_path(p), ctx)
}

/// An annex older than the current one, in the page's language.
fn older_annex_message(locale: crate::web::i18n::Locale, older: &OlderAnnex) -> String {
    let day = |iso: &str| crate::dates::parse_iso(iso).map(crate::dates::format_day).unwrap_or_else(|| iso.to_string());
    text(locale, "console_older_annex")
        .replace("{transmitted}", &day(&older.transmitted))
        .replace("{current}", &day(&older.current))
}

/// The dry run of the file sent (a multipart form: its CSRF token is one
/// of its parts, checked once read).
pub(super) async fn upload(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::Habilitation>,
    Path(id): Path<String>,
    form: Multipart,
) -> PageResult {
    let locale = c.locale;
    let p = visible_partner(&app, &c.admin, &id).await.map_err(|e| refusal(e, locale, "err_not_found"))?;
    let Ok(up) = read_upload(form).await else {
        return Err(pages::error_page(StatusCode::BAD_REQUEST, locale, "err_bad_upload"));
    };
    if let Some(refused) = csrf_refusal(&app, &c.jar, locale, up.csrf.as_deref()) {
        return Err(refused);
    }
    let typed = up.transmitted.as_deref();
    if up.bytes.is_empty() {
        return Err(form_error(&app, &c, &p, Field::File, text(locale, "console_file_missing").into(), typed));
    }
    let file = AnnexFile { file_name: &up.file_name, bytes: &up.bytes, transmitted: typed };
    let outcome = match annex1::import(&app, &c.admin, &p, &file, false).await {
        Ok(o) => o,
        Err(AdminError::BadDate(_)) => {
            return Err(form_error(&app, &c, &p, Field::Transmitted, text(locale, "console_bad_date").into(), typed));
        }
        Err(AdminError::OlderAnnex(older)) => {
            return Err(form_error(&app, &c, &p, Field::Transmitted, older_annex_message(locale, &older), typed));
        }
        // A file that cannot be read (format, limits, header): said on the
        // form, which stays there for the corrected file.
        Err(AdminError::App(AppError::Invalid(message))) => {
            return Err(form_error(&app, &c, &p, Field::File, message, typed));
        }
        Err(e) => return Err(refusal(e, locale, "err_not_found")),
    };
    let handle = annex1::keep_for_apply(&app, &c.admin, &p, &file, &outcome.plan)
        .await
        .map_err(|e| refusal(e, locale, "err_not_found"))?;
    Ok(show_plan(&app, &c, &p, &outcome.plan, handle, false))
}

/// "Appliquer": the file kept under the form's handle, applied once.
pub(super) async fn apply(
    State(app): State<AppState>,
    Administrator(c, _): Administrator<roles::CafHabilitation>,
    Path(id): Path<String>,
    CheckedForm { form, .. }: CheckedForm,
) -> PageResult {
    let locale = c.locale;
    let p = visible_partner(&app, &c.admin, &id).await.map_err(|e| refusal(e, locale, "err_not_found"))?;
    let handle = form.get("handle").unwrap_or("");
    match annex1::apply_kept(&app, &c.admin, &p, handle).await {
        Ok(Some(outcome)) => Ok(show_plan(&app, &c, &p, &outcome.plan, None, outcome.applied)),
        Ok(None) => Err(pages::error_page(StatusCode::BAD_REQUEST, locale, "console_upload_expired")),
        // Another annex, newer, was applied since this one was checked.
        Err(AdminError::OlderAnnex(older)) => {
            Err(form_error(&app, &c, &p, Field::Transmitted, older_annex_message(locale, &older), None))
        }
        Err(e) => Err(refusal(e, locale, "console_upload_expired")),
    }
}

/// The plan page: the dry run's table and problems by line, with
/// "Appliquer" when `handle` is given.
fn show_plan(
    app: &AppState,
    c: &AdminPage,
    p: &PartnerRow,
    plan: &Plan,
    handle: Option<String>,
    applied: bool,
) -> Response {
    let ctx = context! {
        partner_id => p.id.clone(),
        partner_name => p.name.clone(),
        plan => Value::from_serialize(plan),
        changes => plan.changes(),
        handle => handle,
        applied => applied,
    };
    let status = if !plan.errors.is_empty() && applied { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    c.render(app, status, "admin/annex1_plan.html", &form_path(p), ctx)
}
