//! The operating-system releases pgha knows: what each ships, so a design
//! that names no PostgreSQL version gets the release's own.

use serde::Serialize;

/// A release as the facts name it (`$ID $VERSION_ID` of /etc/os-release),
/// with the versions its archive ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Release {
    /// `debian 13`
    pub os: &'static str,
    pub codename: &'static str,
    pub postgres: u32,
    pub patroni: &'static str,
    pub etcd: &'static str,
    pub haproxy: &'static str,
}

pub const DEBIAN13: Release = Release {
    os: "debian 13",
    codename: "trixie",
    postgres: 17,
    patroni: "4.0",
    etcd: "3.5",
    haproxy: "3.0",
};

pub const DEBIAN12: Release = Release {
    os: "debian 12",
    codename: "bookworm",
    postgres: 15,
    patroni: "3.0",
    etcd: "3.4",
    haproxy: "2.6",
};

/// Every supported release, the reference first.
pub const SUPPORTED: [Release; 2] = [DEBIAN13, DEBIAN12];

/// The reference: what a design gets when nothing says otherwise (`pgha plan`
/// before any host was read).
pub const REFERENCE: Release = DEBIAN13;

/// The supported release a host runs, from its `os` fact.
pub fn of(os: &str) -> Option<Release> {
    SUPPORTED.into_iter().find(|r| r.os == os)
}

/// `debian 13 (trixie), debian 12 (bookworm)`, for messages.
pub(crate) fn supported_list() -> String {
    let names: Vec<String> = SUPPORTED.iter().map(|r| format!("{} ({})", r.os, r.codename)).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_found_by_their_os_fact() {
        assert_eq!(of("debian 13").map(|r| r.postgres), Some(17));
        assert_eq!(of("debian 12").map(|r| r.postgres), Some(15));
        assert_eq!(of("debian 11"), None);
        assert_eq!(of("ubuntu 24.04"), None);
        assert_eq!(REFERENCE, DEBIAN13);
    }
}
