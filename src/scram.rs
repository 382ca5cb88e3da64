//! PostgreSQL's SCRAM-SHA-256 password verifier (RFC 5802, RFC 7677), as
//! `pg_authid.rolpassword` holds it. pgha sends a role's verifier, never its
//! password, and tells whether a stored verifier is of a given password by
//! recomputing it with the stored salt and iterations.

use sha2::{Digest, Sha256};

/// PostgreSQL's default `scram_iterations`.
pub(crate) const ITERATIONS: u32 = 4096;

/// HMAC-SHA-256 (RFC 2104).
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `Hi()`: PBKDF2 with HMAC-SHA-256, one block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut prev = hmac(password, &[salt, &[0, 0, 0, 1]]);
    let mut out = prev;
    for _ in 1..iterations {
        prev = hmac(password, &[&prev]);
        for (o, p) in out.iter_mut().zip(prev) {
            *o ^= p;
        }
    }
    out
}

/// The verifier of `password` with this salt and iteration count. Passwords
/// pgha accepts are printable ASCII, which SASLprep leaves as they are.
pub(crate) fn verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let salted = hi(password.as_bytes(), salt, iterations);
    let client_key = hmac(&salted, &[b"Client Key"]);
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac(&salted, &[b"Server Key"]);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        crate::shell::base64(salt),
        crate::shell::base64(&stored_key),
        crate::shell::base64(&server_key)
    )
}

/// A verifier of `password` with a fresh random salt.
pub(crate) fn new_verifier(password: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::io::Read;
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .context("cannot read /dev/urandom")?;
    Ok(verifier(password, &salt, ITERATIONS))
}

/// The `iterations:salt` part of a stored SCRAM verifier; `None` for
/// anything else (no password, an MD5 hash).
pub(crate) fn parameters(stored: &str) -> Option<(u32, Vec<u8>)> {
    let (iterations, salt) = stored.split_once(':')?;
    Some((iterations.parse().ok()?, crate::shell::base64_decode(salt)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn the_verifier_is_postgres_own() {
        // The vector of rust-postgres' postgres-protocol, which matches libpq's.
        let salt: Vec<u8> = (1..=16).collect();
        assert_eq!(
            verifier("secret", &salt, 4096),
            "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA="
        );
    }

    #[test]
    fn a_stored_verifier_gives_its_parameters() {
        let v = new_verifier("pw").unwrap();
        let params = v.strip_prefix("SCRAM-SHA-256$").unwrap().split('$').next().unwrap();
        let (i, salt) = parameters(params).unwrap();
        assert_eq!(i, ITERATIONS);
        assert_eq!(verifier("pw", &salt, i), v);
        assert_ne!(verifier("other", &salt, i), v);
        assert!(parameters("md5abc").is_none());
    }
}
