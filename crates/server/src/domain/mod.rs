//! The product's rules, with no HTTP in them: what the API, the command line and the workers
//! all call.

pub mod bots;
pub mod linkgen;
