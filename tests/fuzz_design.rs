//! Whatever the bytes, the design loader answers with problems, never a panic.

mod common;

use std::path::Path;

use proptest::prelude::*;

fn load_never_panics(src: &str, path: &Path) {
    let result = std::panic::catch_unwind(|| pgha::design::load_str(src, path));
    assert!(result.is_ok(), "the loader panicked on:\n{src}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        load_never_panics(&String::from_utf8_lossy(&bytes), Path::new("fuzz.yaml"));
    }

    #[test]
    fn arbitrary_yaml_like_text(src in "[a-z_:\\-\\[\\]{}, \n0-9'\"&*!|>#]{0,400}") {
        load_never_panics(&src, Path::new("fuzz.yaml"));
    }

    #[test]
    fn mutated_examples(
        which in 0usize..2,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..12),
    ) {
        let name = ["two-clouds.yaml", "single-cloud.yaml"][which];
        let path = common::example(name);
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, op, byte) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                2 => bytes.insert(i, byte),
                _ => {
                    // Duplicate or drop a whole line: plausible editing slips.
                    let start = bytes[..i].iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
                    let end = bytes[i..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |p| i + p + 1);
                    let line: Vec<u8> = bytes[start..end].to_vec();
                    if byte % 2 == 0 { bytes.splice(start..start, line); } else { bytes.drain(start..end); }
                }
            }
        }
        load_never_panics(&String::from_utf8_lossy(&bytes), &path);
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let src = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = pgha::design::load_str(&src, Path::new("deep.yaml")).unwrap_err();
    assert!(err.problems[0].message.contains("YAML"), "{err}");
}
