//! coop-idp: the OpenID Connect identity provider of the Coopération platform.
//!
//! Layering (arrows point one way):
//! `web` / `cli` / `startup` → domain (`oidc`, `auth`, `accounts`…) →
//! the running context (`app`) and what it holds (`store`, `keys`,
//! `password`, `mail_transport` with `smtp_relay`, `config`, `clock`, `error`).
//! The domain never imports axum; the store knows nothing of HTTP.
//! `tests/architecture.rs` checks these arrows.

pub mod accounts;
pub mod admin;
pub mod alerts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod dates;
pub mod error;
pub mod keys;
pub mod mail;
pub mod mail_transport;
pub mod metrics;
pub mod oidc;
pub mod password;
pub mod provisioning;
pub mod retention;
pub mod smtp_relay;
pub mod startup;
pub mod store;
pub mod web;
