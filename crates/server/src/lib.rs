//! botlink server: configuration, storage, HTTP API, redirects and the `botlink` command line.
//!
//! The library exposes [`app::run`], which serves until a cancellation token fires; `main.rs`
//! only parses the command line. Tests call the same `run` on port 0.
//!
//! A folder per concern:
//! - [`app`]: `run`, the state handlers share, the router, configuration, metrics, health;
//! - [`api`]: the JSON API under `/api/v1`, a module per resource, keys and errors;
//! - [`domain`]: the product's rules, callable from the API, the command line and workers;
//! - [`redirect`]: the public side (short links, the link cache, click recording, pages, QR);
//! - [`webhooks`]: what the messengers send, verified and stored;
//! - [`flow`]: the workers that turn stored updates into contacts, Starts, scenario runs,
//!   messages and deliveries;
//! - [`outbound`]: every request botlink makes (guarded against private networks) and the
//!   channels' send APIs;
//! - [`store`]: storage behind traits, on SQLite or PostgreSQL;
//! - [`cli`]: the `botlink` command line.

pub mod api;
pub mod app;
pub mod cli;
pub mod crypto;
pub mod domain;
pub mod flow;
pub mod outbound;
pub mod redirect;
pub mod store;
pub mod util;
pub mod webhooks;

pub use app::config::Config;
pub use app::{AppState, ServeError, run};
