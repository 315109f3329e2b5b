//! botlink server: configuration, storage, HTTP API, redirects and the `botlink` command line.
//!
//! The library exposes [`app::run`], which serves until a cancellation token fires; `main.rs`
//! only parses the command line. Tests call the same `run` on port 0.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clicks;
pub mod config;
pub mod crypto;
pub mod error;
pub mod health;
pub mod link_cache;
pub mod linkgen;
pub mod metrics;
pub mod pages;
pub mod qr;
pub mod redirect;
pub mod store;
pub mod util;

pub use app::{AppState, ServeError, run};
pub use config::Config;
