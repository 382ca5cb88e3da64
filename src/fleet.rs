//! The fleet as commands see it: the hosts that answered over SSH and the
//! ones that did not, and what every command asks them (the Patroni cluster,
//! SQL over the local socket, WAL positions as numbers).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::components::patroni;
use crate::design::{Cloud, Design, Host};
use crate::remote::{self, ConnectError, Remote};

/// Connected hosts of a design; unreachable ones are listed, not fatal.
pub(crate) struct Fleet<'a> {
    pub design: &'a Design,
    pub remotes: BTreeMap<String, Remote>,
    pub unreachable: Vec<ConnectError>,
}

impl<'a> Fleet<'a> {
    pub(crate) async fn connect(design: &'a Design, with_glb: bool) -> Fleet<'a> {
        let mut hosts: Vec<Host> = design.clouds.iter().flat_map(|c| c.hosts.iter().cloned()).collect();
        if with_glb {
            hosts.extend(design.glb_hosts().iter().cloned());
        }
        let (ok, unreachable) = remote::connect_all(&hosts, Duration::from_secs(8)).await;
        Fleet {
            design,
            remotes: ok.into_iter().map(|r| (r.name.clone(), r)).collect(),
            unreachable,
        }
    }

    pub(crate) fn remote(&self, host: &str) -> anyhow::Result<&Remote> {
        self.remotes
            .get(host)
            .ok_or_else(|| anyhow!("{host} is unreachable over SSH"))
    }

    pub(crate) fn reachable(&self, host: &str) -> bool {
        self.remotes.contains_key(host)
    }

    pub(crate) fn cloud_reachable(&self, cloud: &Cloud) -> bool {
        cloud.hosts.iter().any(|h| self.reachable(&h.name))
    }

    pub(crate) async fn cluster_view(&self, cloud: &Cloud) -> anyhow::Result<Vec<patroni::Member>> {
        cluster_view(self.design, &self.remotes, cloud).await
    }

    /// Runs SQL as the postgres OS user over the local socket (peer
    /// authentication: no password anywhere); returns unaligned output.
    pub(crate) async fn psql(&self, host: &str, sql: &str) -> anyhow::Result<String> {
        let script = psql_script(self.design.platform.postgres_port, sql);
        Ok(self
            .remote(host)?
            .check("running SQL", &script)
            .await?
            .trim()
            .to_string())
    }

    pub(crate) async fn close(self) {
        remote::close_all(self.remotes.into_values()).await;
    }
}

pub(crate) fn psql_script(port: u16, sql: &str) -> String {
    format!("runuser -u postgres -- psql -p {port} -XAtq -v ON_ERROR_STOP=1 <<'PGHA_SQL'\n{sql}\nPGHA_SQL")
}

/// The cloud's Patroni cluster as the first member that answers sees it.
pub(crate) async fn cluster_view(
    design: &Design,
    remotes: &BTreeMap<String, Remote>,
    cloud: &Cloud,
) -> anyhow::Result<Vec<patroni::Member>> {
    let script = patroni::cluster_script(design.governor.rest_port);
    let mut last = anyhow!("no Patroni member of {} answered", cloud.name);
    for h in &cloud.hosts {
        if let Some(r) = remotes.get(&h.name) {
            match r
                .check("reading the Patroni cluster", &script)
                .await
                .and_then(|t| patroni::parse_cluster(&t))
            {
                Ok(members) if !members.is_empty() => return Ok(members),
                Ok(_) => {}
                Err(e) => last = e,
            }
        }
    }
    Err(last)
}

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
