//! Edits to the design file that keep the user's comments and formatting:
//! only the bytes of the changed scalar are replaced.

use std::path::Path;

use anyhow::{anyhow, bail, Context};

use super::yaml::{Kind, Node};
use super::CloudStatus;

/// Sets `clouds[NAME].status` in the file at `path`.
pub fn set_cloud_status(path: &Path, cloud: &str, status: CloudStatus) -> anyhow::Result<()> {
    let src = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let out = with_cloud_status(&src, cloud, status)?;
    let tmp = path.with_extension("pgha-tmp");
    std::fs::write(&tmp, out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

pub fn with_cloud_status(src: &str, cloud: &str, status: CloudStatus) -> anyhow::Result<String> {
    let root = Node::parse(src).map_err(|e| anyhow!("{}:{}: {}", e.span.line, e.span.col, e.message))?;
    let Some(Node {
        kind: Kind::Seq(clouds),
        ..
    }) = root.lookup("clouds")
    else {
        bail!("the design has no `clouds` list");
    };
    let i = clouds
        .iter()
        .position(|c| c.lookup("name").and_then(Node::as_str) == Some(cloud))
        .ok_or_else(|| anyhow!("no cloud named `{cloud}` in the design"))?;
    let node = root
        .lookup(&format!("clouds[{i}].status"))
        .ok_or_else(|| anyhow!("cloud `{cloud}` has no status"))?;
    let old = node
        .as_str()
        .ok_or_else(|| anyhow!("cloud `{cloud}`: status is not text"))?;
    let line_start: usize = src.split_inclusive('\n').take(node.span.line - 1).map(str::len).sum();
    let line = src[line_start..].lines().next().unwrap_or_default();
    // Columns count characters; find the byte offset of the scalar.
    let col = line
        .char_indices()
        .nth(node.span.col - 1)
        .map_or(line.len(), |(b, _)| b);
    let start = line_start + col;
    let quoted = matches!(src[start..].chars().next(), Some('"' | '\''));
    let len = old.len() + if quoted { 2 } else { 0 };
    if src.get(start..start + len).map(|s| s.trim_matches(['"', '\''])) != Some(old) {
        bail!("cannot locate the status of cloud `{cloud}` in the file; edit it by hand");
    }
    Ok(format!("{}{}{}", &src[..start], status.as_str(), &src[start + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_only_the_status() {
        let src = "# mine\nclouds:\n  - name: dc1\n    status: primary   # serves traffic\n  - {name: dc2, status: 'secondary'}\n";
        let out = with_cloud_status(src, "dc1", CloudStatus::Secondary).unwrap();
        assert_eq!(out, "# mine\nclouds:\n  - name: dc1\n    status: secondary   # serves traffic\n  - {name: dc2, status: 'secondary'}\n");
        let out = with_cloud_status(&out, "dc2", CloudStatus::Primary).unwrap();
        assert!(out.ends_with("  - {name: dc2, status: primary}\n"), "{out}");
        assert!(with_cloud_status(src, "dc9", CloudStatus::Primary).is_err());
    }
}
