//! The product's rules, with no HTTP in them: what the API, the command line and the workers
//! all call.

pub mod bots;
mod error;
pub mod linkgen;
pub mod links;
pub mod validate;

pub use error::DomainError;
