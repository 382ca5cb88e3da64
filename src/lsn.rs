//! PostgreSQL's WAL positions (LSNs), as numbers and as PostgreSQL writes them.

use anyhow::{anyhow, Context};

/// An LSN such as `0/5000060` as a number, for comparisons.
pub(crate) fn parse_lsn(text: &str) -> anyhow::Result<u64> {
    let (hi, lo) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| anyhow!("not an LSN: {text:?}"))?;
    let hi = u64::from_str_radix(hi, 16).with_context(|| format!("not an LSN: {text:?}"))?;
    let lo = u64::from_str_radix(lo, 16).with_context(|| format!("not an LSN: {text:?}"))?;
    Ok((hi << 32) | lo)
}

pub(crate) fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip() {
        assert_eq!(parse_lsn("0/5000060").unwrap(), 0x5000060);
        assert_eq!(parse_lsn("1/0").unwrap(), 1 << 32);
        assert_eq!(format_lsn(parse_lsn("A/B00").unwrap()), "A/B00");
        assert!(parse_lsn("nope").is_err());
    }
}
