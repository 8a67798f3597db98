//! The catalogues of user-facing text, one per language (`fr.rs`, `en.rs`),
//! typed by page: each catalogue is one value of [`Texts`], so a text missing
//! from a language, or present in one only, does not compile. Templates
//! read them flat, as `t.<key>` (the key is the field's name); the
//! environment's strict mode and the rendering test of `pages.rs` catch a
//! key a template asks for that no catalogue has.

mod en;
mod fr;

use super::i18n::Locale;

/// Declares the catalogue's shape: one struct per page group, one field per
/// text, and the (key, text) pairs of a catalogue in declaration order.
macro_rules! catalogue {
    ($( $(#[$doc:meta])* $group:ident : $ty:ident { $($key:ident),* $(,)? } )*) => {
        /// Every text of the pages, grouped by page.
        pub struct Texts {
            $( $(#[$doc])* pub $group: $ty, )*
        }

        $(
            $(#[$doc])*
            pub struct $ty {
                $( pub $key: &'static str, )*
            }

            impl $ty {
                fn entries(&self) -> impl Iterator<Item = (&'static str, &'static str)> {
                    [$( (stringify!($key), self.$key) ),*].into_iter()
                }
            }
        )*

        impl Texts {
            /// Every (key, text) pair of this catalogue.
            pub fn entries(&self) -> impl Iterator<Item = (&'static str, &'static str)> {
                std::iter::empty() $( .chain(self.$group.entries()) )*
            }
        }
    };
}

catalogue! {
    /// The frame of every page: header, skip links, language switch, footer.
    layout: Layout {
        service_tagline, skiplinks_label, skip_to_content, skip_to_footer, switch_language, switch_language_label,
        footer_text, footer_a11y,
    }
    /// The sign-in form and what it answers.
    sign_in: SignIn {
        signin_title, signin_intro, signin_for, email_label, email_hint, password_label, signin_button,
        signin_failed, error_summary, signed_in_title, signed_in_text, signin_throttled, back_to_signin,
    }
    /// Signing out, with its confirmation.
    sign_out: SignOut {
        signed_out_title, signed_out_text, logout_confirm_title, logout_confirm_text, logout_confirm_button,
    }
    /// Error pages: the title, the way back, and each cause.
    errors: Errors {
        error_title, error_back, err_repeated_parameter, err_missing_client_id, err_unknown_client,
        err_missing_redirect_uri, err_unregistered_redirect_uri, err_parameter_too_long, err_request_expired,
        err_csrf, err_invalid_id_token_hint, err_client_mismatch, err_unregistered_post_logout_uri, err_not_found,
        err_internal, err_unavailable, err_signin_first, err_second_factor_expired, err_forbidden, err_bad_upload,
    }
    /// Creating, renewing and changing a password, with the policy's rules.
    password: Passwords {
        change_title, pw_current_label, pw_current_wrong, changed_title, pw_for_account, activate_title, reset_title,
        pw_rules_intro, pw_rule_length, pw_rule_upper, pw_rule_lower, pw_rule_digit, pw_rule_special,
        pw_rule_personal, pw_rule_common, pw_new_label, pw_confirm_label, pw_submit, pw_too_short, pw_too_long,
        pw_no_uppercase, pw_no_lowercase, pw_no_digit, pw_no_special, pw_invisible, pw_personal, pw_common,
        pw_mismatch, activated_title, activated_text, reset_done_title, reset_done_text,
    }
    /// Activation and reset links that cannot be used.
    links: Links {
        link_unknown, link_used, link_expired, link_superseded, link_help_activation, link_help_reset,
    }
    /// The lost-password request.
    forgot: Forgot {
        forgot_password, forgot_title, forgot_intro, forgot_submit, forgot_sent,
    }
    /// The second step of sign-in, its enrolment and the account's security page.
    second_factor: SecondFactor {
        second_factor_title, second_factor_intro, code_label, code_hint, enrol_code_hint, verify_button,
        second_factor_failed, second_factor_throttled, enrol_title, enrol_intro, enrol_step_scan, enrol_step_codes,
        step_1_of_2, step_2_of_2, next_step, enrol_qr_alt, enrol_manual, enrol_key_caption, enrol_button,
        codes_title, codes_intro, codes_list_label, continue_button, security_title, security_enabled, security_codes_left,
        security_disabled, security_enable_button, two_factors_asked,
    }
    /// Passkeys (issue 17): sign-in, second factor, enrolment, security page.
    passkeys: Passkeys {
        passkey_signin_intro, passkey_signin_button, passkey_none, passkey_email_first, passkey_browser_failed,
        passkey_signin_failed, passkey_step_failed, passkey_try_again, passkey_step_title, passkey_step_intro,
        passkey_use_button, passkey_or_code, passkey_enrol_title, passkey_enrol_intro, passkey_name_label,
        passkey_name_hint, passkey_register_button, passkey_section_title, passkey_section_intro, passkey_none_yet,
        passkey_caption, passkey_col_name, passkey_col_created, passkey_col_last_used, passkey_col_actions,
        passkey_never, passkey_rename_button, passkey_remove_button, passkey_new_name_label, passkey_remove_label,
        passkey_add_title, passkey_stale, passkey_signin_again, passkey_limit_reached, passkey_needs_script,
        passkey_name_invalid, passkey_notice_added, passkey_notice_renamed, passkey_notice_removed,
        passkey_notice_refused, passkey_notice_stale, passkey_notice_name, passkey_notice_limit,
        passkey_console_caption, passkey_console_removed,
    }
    /// The accessibility statement (its body is in the template).
    statement: Statement {
        a11y_title,
    }
    /// The administration console.
    console: Console {
        console_title, console_nav_label, console_home, console_signed_in_as, console_sign_out, console_logs,
        console_logs_intro, console_alerts, console_integrity, console_purges, console_partners,
        console_partners_intro, console_review, console_filters, console_partner_id, console_event,
        console_event_hint, console_outcome, console_outcome_any, console_outcome_success, console_outcome_failure,
        console_err_event, console_err_outcome, console_err_partner, console_err_ip, console_err_time,
        console_err_period, console_err_page, console_valid_values, console_no_partner, console_ip, console_since,
        console_until, console_time_hint, console_search, console_export_csv, console_logs_caption, console_col_time,
        console_col_outcome, console_col_actor, console_col_detector, console_col_subject, console_col_message,
        console_col_details, console_col_name, console_col_state, console_col_last_signin, console_col_actions,
        console_col_line, console_col_code, console_col_action, console_col_function, console_none, console_page,
        console_pagination, console_prev, console_next, console_intact, console_records, console_broken,
        console_verified_at, console_checkpoints, console_latest_checkpoint, console_last_purge, console_purge_runs,
        console_attestations, console_partner, console_destructions, console_download, console_convention,
        console_term, console_annex1, console_annex2, console_accounts_of, console_resend, console_close,
        console_done_activation_sent, console_done_closed, console_annex1_upload, console_annex1_propose,
        console_annex1_intro, console_file, console_file_hint, console_transmitted, console_date_hint,
        console_dry_run, console_plan, console_applied, console_applied_text, console_plan_has_errors,
        console_errors, console_warnings, console_changes, console_unchanged, console_action_open,
        console_action_reopen, console_action_update, console_action_close, console_apply_confirm, console_apply,
        console_proposal_only, console_back_to_partner, console_close_title, console_close_warning,
        console_close_confirm, console_cancel, console_deadline, console_review_up_to_date, console_review_due_soon,
        console_review_overdue, console_file_missing, console_bad_date, console_upload_expired, console_not_pending,
    }
    /// The console's words for the codes it shows (the code itself stays in
    /// a tooltip and in exports): `label_kind_` + every connection-log kind,
    /// `label_outcome_`, `label_state_` (accounts), `label_role_`,
    /// `label_convention_`. A code without its label fails `every_code_has_a_label`.
    labels: Labels {
        label_kind_signin, label_kind_signin_failed, label_kind_signout, label_kind_session_expired,
        label_kind_token_issued, label_kind_token_refreshed, label_kind_refresh_reuse_detected,
        label_kind_token_revoked, label_kind_activation_sent, label_kind_password_created, label_kind_reset_requested,
        label_kind_reset_sent, label_kind_password_reset, label_kind_password_changed, label_kind_throttled,
        label_kind_access_opened, label_kind_access_reopened, label_kind_access_closed, label_kind_access_updated,
        label_kind_annex1_dry_run, label_kind_annex1_applied, label_kind_convention_changed,
        label_kind_backchannel_logout_sent, label_kind_backchannel_logout_failed, label_kind_log_read,
        label_kind_log_exported, label_kind_purge, label_kind_introspection_denied, label_kind_link_refused,
        label_kind_alert, label_kind_role_granted, label_kind_role_revoked, label_kind_totp_enrolled,
        label_kind_second_factor, label_kind_second_factor_failed, label_kind_recovery_code_used,
        label_kind_second_factor_reset, label_kind_passkey_registered, label_kind_passkey_removed,
        label_outcome_success, label_outcome_failure, label_state_pending,
        label_state_active, label_state_closed, label_role_caf_habilitation, label_role_caf_security,
        label_role_partner_habilitation, label_convention_not_signed, label_convention_in_force,
        label_convention_ended, label_convention_terminated,
    }
    /// The console's local times, and the annex-1 page's new answers.
    console_dates: ConsoleDates {
        console_time_zone, console_upload_again, console_older_annex,
    }
    /// The home page (`/`), the set-password checklist and its onward links.
    newcomer: Newcomer {
        home_title, home_intro, home_where, home_security, home_security_hint, home_console, home_console_hint,
        home_discovery, home_discovery_hint, home_agents, pw_rule_met, pw_rule_unmet, pw_rule_on_submit,
        pw_errors_one, pw_errors_many, pw_same_as_current, to_signin,
    }
    /// Column headers of the connection-log CSV export: `csv_col_` + a field of `audit::export::CSV_COLUMNS`.
    csv: CsvHeaders {
        csv_col_seq, csv_col_time, csv_col_kind, csv_col_outcome, csv_col_email, csv_col_account_id,
        csv_col_partner_id, csv_col_client_id, csv_col_ip, csv_col_user_agent, csv_col_actor, csv_col_details,
    }
}

/// The catalogue of `locale`.
pub fn of(locale: Locale) -> &'static Texts {
    match locale {
        Locale::Fr => &fr::TEXTS,
        Locale::En => &en::TEXTS,
    }
}
