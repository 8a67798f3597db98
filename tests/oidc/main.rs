//! Integration tests: the real server driven by a real relying party. One
//! test per module of the conformance plans in ../shared/CONFORMANCE.md,
//! each on SQLite and on PostgreSQL.

mod cluster;
mod common;

mod admin_api;
mod alerts;
mod annex1;
mod annex1_hostile;
mod authorize;
mod authorize_limits;
mod backchannel;
mod basic;
mod bulk_write;
mod code_session;
mod command_line;
mod connection_log;
mod console;
mod credentials;
mod discovery;
mod faults;
mod group_commit;
mod log_integrity;
mod logout;
mod mail_outbox;
mod multi_instance;
mod pages;
mod passkeys;
mod password_change;
mod quick_start;
mod refresh;
mod retention;
mod review;
mod rotation;
mod second_factor;
mod second_step;
mod session_expiry;
mod signin_core;
mod step_up;
mod throttle_burst;
mod throttle_shared;
mod token;
mod transfer;
