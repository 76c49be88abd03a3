//! The documentation says what the code does.

#[test]
fn readme_documents_every_fixture_iin() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for f in gbdfl::emulator::fixtures() {
        assert!(
            readme.contains(&format!("`{}` | {} |", f.iin, f.outcome)),
            "README.md lacks fixture {} {}",
            f.iin,
            f.outcome
        );
    }
}
