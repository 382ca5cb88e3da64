//! The shapes values must have before they reach a shell line or a config
//! file. Each is a pure predicate; validation turns a `false` into a located
//! problem. Quoting still happens everywhere (`crate::shell`): these checks
//! make configs mean what the DBA meant, quoting keeps the shell safe.

use std::net::IpAddr;

/// Cluster, cloud and host names: they become etcd keys, Patroni member
/// names, HAProxy server names and file names.
pub(crate) fn name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// What an address is, which decides how URLs and pg_hba write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Address {
    V4,
    V6,
    Host,
}

/// A Linux network interface name (IFNAMSIZ: 15 characters; no `/`,
/// space or `:` alias suffix).
pub(crate) fn interface(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// A systemd calendar expression (OnCalendar=) in the characters its
/// grammar uses: it stands alone on a unit file's line, never in a shell.
pub(crate) fn calendar(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && !s.starts_with(' ')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || " *.,:/~-".contains(c))
}

/// An IPv4 or IPv6 address or an RFC 1123 host name. pg_hba's keywords are
/// not host names there (`all` would match every address).
pub(crate) fn address(s: &str) -> Option<Address> {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => Some(Address::V4),
        Ok(IpAddr::V6(_)) => Some(Address::V6),
        Err(_) if hostname(s) && !matches!(s, "all" | "samehost" | "samenet") => Some(Address::Host),
        Err(_) => None,
    }
}

/// RFC 1123: dot-separated labels of letters, digits and inner hyphens; not
/// all digits (that would be a mistyped IPv4 address).
pub(crate) fn hostname(s: &str) -> bool {
    s.len() <= 253
        && !s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// An address as the host part of a URL or `host:port`: IPv6 in brackets.
pub(crate) fn url_host(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{address}]"),
        _ => address.to_string(),
    }
}

/// An absolute path of plain characters, without `..` or empty components.
pub(crate) fn abs_path(s: &str) -> bool {
    s.len() <= 255
        && s.starts_with('/')
        && s.len() > 1
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
        && s[1..].split('/').all(|p| !p.is_empty() && p != "." && p != "..")
}

/// A PostgreSQL parameter name (`work_mem`, or an extension's `pg_stat_statements.max`).
pub(crate) fn pg_parameter(s: &str) -> bool {
    let ident = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match s.split_once('.') {
        Some((a, b)) => ident(a) && ident(b),
        None => ident(s),
    }
}

/// A POSIX portable user name, as Debian's adduser accepts by default.
pub(crate) fn posix_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
}

/// An environment variable's name, as POSIX shells take it.
pub(crate) fn env_var(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A network in CIDR form with a prefix that fits its family.
pub(crate) fn cidr(s: &str) -> bool {
    let Some((addr, bits)) = s.split_once('/') else {
        return false;
    };
    match (addr.parse::<IpAddr>(), bits.parse::<u8>()) {
        (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32 && !bits.starts_with('+'),
        (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128 && !bits.starts_with('+'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address("10.77.0.11"), Some(Address::V4));
        assert_eq!(address("fd00::11"), Some(Address::V6));
        assert_eq!(address("db-1.example.com"), Some(Address::Host));
        for bad in [
            "10.77.0.11';touch${IFS}x;echo${IFS}'",
            "all",
            "samenet",
            "",
            "a b",
            "-x",
            "x..y",
            "10.0.0.256",
            "1.2.3",
            "[::1]",
            "host:22",
        ] {
            assert_eq!(address(bad), None, "{bad}");
        }
        assert_eq!(url_host("fd00::11"), "[fd00::11]");
        assert_eq!(url_host("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn paths_parameters_users_networks() {
        assert!(abs_path("/var/lib/postgresql/17/pgha"));
        for bad in [
            "/var/lib/pg;touch${IFS}x;",
            "relative",
            "/",
            "/a/../b",
            "/a//b",
            "/a b",
            "/a/",
        ] {
            assert!(!abs_path(bad), "{bad}");
        }
        assert!(pg_parameter("work_mem") && pg_parameter("pg_stat_statements.max"));
        for bad in ["work_mem: 1\nx", "a.b.c", "1abc", "", "max-connections"] {
            assert!(!pg_parameter(bad), "{bad}");
        }
        assert!(posix_user("postgres") && posix_user("_svc-1"));
        assert!(!posix_user("Root") && !posix_user("a;b") && !posix_user("-x"));
        assert!(cidr("10.0.0.0/8") && cidr("fd00::/64"));
        assert!(!cidr("all") && !cidr("10.0.0.0/33") && !cidr("10.0.0.0") && !cidr("10.0.0.0/+8"));
    }
}
