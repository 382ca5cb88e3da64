//! pgha: highly available PostgreSQL across clouds, deployed over SSH.

pub mod app;
pub(crate) mod cli;
pub(crate) mod components;
pub(crate) mod deploy;
pub mod design;
pub(crate) mod engine;
pub mod error;
pub(crate) mod fleet;
pub(crate) mod fsutil;
pub(crate) mod journal;
pub(crate) mod lab;
pub mod lock;
pub(crate) mod lsn;
pub(crate) mod ops;
pub mod pki;
pub mod plan;
pub mod release;
pub mod remote;
pub mod render;
pub(crate) mod scram;
pub mod secrets;
pub(crate) mod shell;
pub(crate) mod state;
#[cfg(test)]
pub(crate) mod testkit;
pub mod ui;
pub(crate) mod wait;
