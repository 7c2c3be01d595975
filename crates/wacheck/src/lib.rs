//! The `wacheck` service: configuration and the assembly of API and worker.

pub mod app;
pub mod cli_accounts;
pub mod cli_users;
pub mod config;
