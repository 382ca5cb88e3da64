//! Day-two operations on a deployed cluster: status, cloud flips, switchover,
//! node recovery, backups. They share one view of the fleet (`crate::fleet`).

pub(crate) mod backup;
pub(crate) mod certs;
pub(crate) mod cloud;
pub(crate) mod cluster;
pub(crate) mod connect;
pub(crate) mod dashboard;
pub(crate) mod failover;
pub(crate) mod history;
pub(crate) mod lineage;
pub(crate) mod major;
pub(crate) mod monitoring;
#[cfg(test)]
mod order_tests;
pub(crate) mod pause;
pub(crate) mod recover;
pub(crate) mod restore;
pub(crate) mod site;
pub(crate) mod status;
pub(crate) mod switchover;
pub(crate) mod upgrade;
pub(crate) mod wal;
pub(crate) mod whole;
