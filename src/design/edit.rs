//! Edits to the design file that keep the user's comments and formatting:
//! only the bytes of the changed scalar are replaced.

use std::path::Path;

use anyhow::{anyhow, bail, Context};

use super::yaml::{Kind, Node};
use super::CloudStatus;

/// Sets `clouds[NAME].status` in the file at `path`.
/// The file is replaced atomically (its mode kept, a symlink followed).
pub fn set_cloud_status(path: &Path, cloud: &str, status: CloudStatus) -> anyhow::Result<()> {
    let src = crate::fsutil::read_text(path, crate::fsutil::MAX_DESIGN)?;
    let out = with_cloud_status(&src, cloud, status).with_context(|| format!("cannot edit {}", path.display()))?;
    crate::fsutil::write_atomic(path, out.as_bytes(), 0o644)
}

/// The parsed text and its `clouds` list.
fn parse_clouds(src: &str) -> anyhow::Result<(Node, Vec<Node>)> {
    let root = Node::parse(src).map_err(|e| anyhow!("{}:{}: {}", e.span.line, e.span.col, e.message))?;
    let Some(Node {
        kind: Kind::Seq(clouds),
        ..
    }) = root.lookup("clouds")
    else {
        bail!("the design has no `clouds` list");
    };
    let clouds = clouds.clone();
    Ok((root, clouds))
}

/// Every cloud's status as the text says, in order.
fn statuses(src: &str) -> anyhow::Result<Vec<(Option<String>, Option<String>)>> {
    let (_, clouds) = parse_clouds(src)?;
    Ok(clouds
        .iter()
        .map(|c| {
            let get = |k: &str| c.lookup(k).and_then(Node::as_str).map(str::to_string);
            (get("name"), get("status"))
        })
        .collect())
}

/// The text with only `cloud`'s status changed. The result is parsed again
/// and must differ from the original in that one status: a status shared
/// through a YAML alias (editing it would change another cloud too) or one
/// that cannot be located is refused, never edited through.
pub fn with_cloud_status(src: &str, cloud: &str, status: CloudStatus) -> anyhow::Result<String> {
    let out = edit_status(src, cloud, status)?;
    let before = statuses(src)?;
    let after = statuses(&out)?;
    let expected: Vec<_> = before
        .iter()
        .map(|(n, st)| {
            let st = if n.as_deref() == Some(cloud) {
                Some(status.as_str().to_string())
            } else {
                st.clone()
            };
            (n.clone(), st)
        })
        .collect();
    if after != expected {
        bail!(
            "the status of cloud `{cloud}` is shared with another place in the file (a YAML anchor or alias): \
             edit it by hand, or write each cloud's status out"
        );
    }
    Ok(out)
}

fn edit_status(src: &str, cloud: &str, status: CloudStatus) -> anyhow::Result<String> {
    let (root, clouds) = parse_clouds(src)?;
    let i = clouds
        .iter()
        .position(|c| c.lookup("name").and_then(Node::as_str) == Some(cloud))
        .ok_or_else(|| anyhow!("no cloud named `{cloud}` in the design"))?;
    let path = format!("clouds[{i}].status");
    if root.aliased_along(&path) {
        bail!("the status of cloud `{cloud}` comes from a YAML alias: edit it by hand, or write each cloud out");
    }
    let node = root
        .lookup(&path)
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

    #[test]
    fn a_status_behind_an_alias_is_refused_not_edited_through() {
        // issue 8: editing the anchor changed dc1 when dc2 was flipped.
        let src = "clouds:\n  - name: dc1\n    status: &s secondary\n  - name: dc2\n    status: *s\n";
        let e = with_cloud_status(src, "dc2", CloudStatus::Primary).unwrap_err();
        assert!(e.to_string().contains("alias"), "{e}");
        let src = "x: &c {name: dc1, status: primary}\nclouds:\n  - *c\n  - {name: dc2, status: secondary}\n";
        assert!(with_cloud_status(src, "dc1", CloudStatus::Secondary).is_err());
    }

    #[test]
    fn the_design_file_keeps_its_mode_and_its_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.yaml");
        std::fs::write(&real, "clouds:\n  - name: dc1\n    status: primary\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("pgha.yaml");
        std::os::unix::fs::symlink("real.yaml", &link).unwrap();
        set_cloud_status(&link, "dc1", CloudStatus::Secondary).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(std::fs::read_to_string(&real).unwrap().contains("status: secondary"));
        assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
