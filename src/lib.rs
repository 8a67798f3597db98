//! coop-idp: the OpenID Connect identity provider of the Coopération platform.
//!
//! Layering (arrows point one way):
//! `web` / `cli` → domain (`oidc`, `auth`, `accounts`) → `store`.
//! The domain never imports axum; the store knows nothing of HTTP.

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
pub mod metrics;
pub mod oidc;
pub mod provisioning;
pub mod retention;
pub mod store;
pub mod web;
