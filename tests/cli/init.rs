//! `gbdfl init`, keys and databases that do not fit.

use gbdfl_emulator::iins;

use crate::harness::Env;

#[test]
fn init_creates_owner_only_key_and_database_and_is_safe_to_repeat() {
    let env = Env::bare();
    let r = env.ok(&["init"]);
    assert!(r.stderr.contains("Created database"), "{}", r.stderr);
    let key_before = std::fs::read(&env.key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [&env.key, &env.db] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
        }
    }
    let r = env.ok(&["init"]);
    assert!(r.stderr.contains("Already initialised"), "{}", r.stderr);
    assert_eq!(
        std::fs::read(&env.key).unwrap(),
        key_before,
        "the key was never rewritten"
    );
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::bare();
    env.ok(&["init"]);
    std::fs::set_permissions(&env.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = env.fails(&["show", "900101300017"], 8);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    let r = env.fails(&["init"], 8);
    assert!(
        r.stderr.contains("the group and others can read it"),
        "{}",
        r.stderr
    );
}

#[test]
fn wrong_key_is_refused_before_anything_is_read_or_written() {
    let env = Env::new();
    let iin = iins::VALID;
    env.ok(&["fetch", iin, "--session", &crate::harness::session()]);
    let before = env.db_bytes();
    let other = env.path().join("other.key");
    let other_s = other.to_str().unwrap();
    // A second, different key, made by init for another database.
    let keyed = env.path().join("other-db.db");
    let r = env.run_with(
        &["init"],
        &[
            ("GBDFL_KEY_FILE", other_s),
            ("GBDFL_DB", keyed.to_str().unwrap()),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    for args in [vec!["show", iin], vec!["history", iin]] {
        let r = env.run_with(&args, &[("GBDFL_KEY_FILE", other_s)]);
        assert_eq!(r.code, 8, "{}", r.stderr);
        assert!(
            r.stderr.contains("wrong key for this database"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("--key-file"), "{}", r.stderr);
    }
    let r = env.run_with(
        &[
            "fetch",
            iin,
            "--session",
            &crate::harness::session(),
            "--force",
        ],
        &[("GBDFL_KEY_FILE", other_s)],
    );
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 1, "no call is made with a wrong key");
    assert_eq!(env.db_bytes(), before, "nothing was written");
}

#[test]
fn a_truncated_key_file_says_what_is_wrong() {
    let env = Env::bare();
    env.ok(&["init"]);
    let text = std::fs::read_to_string(&env.key).unwrap();
    std::fs::write(&env.key, &text[..30]).unwrap();
    let r = env.fails(&["show", "900101300017"], 8);
    assert!(r.stderr.contains("not a gbdfl key"), "{}", r.stderr);
}

#[test]
fn a_file_that_is_not_a_database_is_left_alone() {
    let env = Env::bare();
    env.ok(&["init"]);
    std::fs::write(
        &env.db,
        b"this is not sqlite at all, just some text that is long enough",
    )
    .unwrap();
    let before = std::fs::read(&env.db).unwrap();
    let r = env.fails(&["show", "900101300017"], 9);
    assert!(r.stderr.contains("not a gbdfl database"), "{}", r.stderr);
    assert_eq!(std::fs::read(&env.db).unwrap(), before);
}

#[test]
fn no_database_yet_says_run_init() {
    let env = Env::bare();
    env.ok(&["init"]);
    std::fs::remove_file(&env.db).unwrap();
    let r = env.fails(&["show", "900101300017"], 9);
    assert!(r.stderr.contains("gbdfl init"), "{}", r.stderr);
}

#[test]
fn config_shows_sources_and_never_the_api_key() {
    let env = Env::bare();
    std::fs::write(env.path().join("config.toml"), "max_age = \"7d\"\n").unwrap();
    let r = env.ok(&["config", "--operator", "alice"]);
    assert!(
        r.stdout
            .contains("operator            alice  [flag --operator]"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("[env GBDFL_DB]"), "{}", r.stdout);
    assert!(r.stdout.contains("7days  [config"), "{}", r.stdout);
    assert!(
        !r.stdout.contains(crate::harness::API_KEY),
        "API key leaked: {}",
        r.stdout
    );
    assert!(r.stdout.contains("redacted"), "{}", r.stdout);
}

#[test]
fn a_named_config_file_that_does_not_exist_is_an_error() {
    let env = Env::bare();
    let r = env.run_with(&["config"], &[("GBDFL_CONFIG", "/nonexistent/gbdfl.toml")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("no such file") && r.stderr.contains("GBDFL_CONFIG"),
        "{}",
        r.stderr
    );
}

#[test]
fn unknown_config_key_is_an_input_error() {
    let env = Env::bare();
    std::fs::write(env.path().join("config.toml"), "maxage = \"7d\"\n").unwrap();
    let r = env.fails(&["config"], 2);
    assert!(r.stderr.contains("maxage"), "{}", r.stderr);
}
