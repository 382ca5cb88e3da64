//! Day-two operations on a deployed cluster: status, cloud flips, switchover,
//! node recovery. They share one view of the fleet (`crate::fleet`).

pub mod cloud;
pub mod recover;
pub mod report;
pub mod status;
pub mod switchover;
pub mod wal;
