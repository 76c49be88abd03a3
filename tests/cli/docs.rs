//! The documentation says what the code does: every command the binary
//! lists in its help, every environment variable and config key it reads,
//! and every emulator fixture are documented where a reader looks for them.
//! The lists come from the binary and the library, never from a hand list,
//! so a new command or setting without docs fails here.

use std::collections::BTreeSet;
use std::path::Path;

use crate::harness::Env;

fn doc(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn reference() -> String {
    doc("docs/reference.md")
}

#[test]
fn emulator_guide_documents_every_fixture_iin() {
    let guide = doc("docs/emulator.md");
    for f in gbdfl_emulator::fixtures() {
        assert!(
            guide.contains(&format!("`{}` | {} |", f.iin, f.outcome)),
            "docs/emulator.md lacks fixture {} {}",
            f.iin,
            f.outcome
        );
    }
}

/// The command names a `--help` page lists: the entries of every section
/// that is not about arguments or options (the top level groups them by
/// task; a command with subcommands has one "Commands:" section).
fn commands_in(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            let heading = line.to_ascii_lowercase();
            in_commands = !heading.contains("options") && !heading.contains("arguments");
        } else if in_commands && line.starts_with("  ") && !line[2..].starts_with(' ') {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name != "help" {
                names.push(name.to_owned());
            }
        }
    }
    names
}

#[test]
fn reference_documents_every_command_the_help_lists() {
    let env = Env::bare();
    let reference = reference();
    let mut seen = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = env.ok(&args).stdout;
        for name in commands_in(&help) {
            let mut sub = path.clone();
            sub.push(name);
            let words = sub.join(" ");
            assert!(
                reference.contains(&format!("`gbdfl {words}")),
                "docs/reference.md does not document `gbdfl {words}` (write a section that starts with it)"
            );
            seen.push(words);
            todo.push(sub);
        }
    }
    // The walk read the real help: the top-level commands and nested ones.
    for expected in [
        "fetch",
        "report",
        "audit verify",
        "queue drop",
        "mock-server",
    ] {
        assert!(seen.iter().any(|s| s == expected), "{expected} in {seen:?}");
    }
}

/// The names a source file passes to an environment lookup as a literal:
/// `env("X")`, `env_nonempty("X")`, `var("X")`, `var_os("X")`,
/// `(ctx.env)("X")`, `env = "X"`.
fn env_literals(src: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in src.match_indices('"') {
        let before = src[..i].trim_end();
        let reads_env = [
            "env(",
            "env_nonempty(",
            "var(",
            "var_os(",
            ".env)(",
            "env =",
        ]
        .iter()
        .any(|p| before.ends_with(p));
        if !reads_env {
            continue;
        }
        let rest = &src[i + 1..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].starts_with('"') {
            names.insert(name);
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn reference_documents_every_environment_variable() {
    // What the clap definitions and the settings read...
    let mut names = gbdfl::cli::env_vars();
    // ...and what any code of the binary reads by name.
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    for f in files {
        names.extend(env_literals(&std::fs::read_to_string(f).unwrap()));
    }
    for expected in ["GBDFL_DB", "GBDFL_API_KEY", "GBDFL_THREADS", "NO_COLOR"] {
        assert!(names.contains(expected), "{expected} found in {names:?}");
    }
    let reference = reference();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !reference.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/reference.md does not document these environment variables: {missing:?}"
    );
}

#[test]
fn reference_documents_every_config_key() {
    // serde names every field it expects when it meets an unknown one.
    let err = toml::from_str::<gbdfl::config::FileConfig>("no_such_key_at_all = 1")
        .expect_err("an unknown key is an error")
        .to_string();
    let list = err
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("serde's message names the keys: {err}"));
    let keys: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
    assert!(
        keys.contains(&"db") && keys.contains(&"retry_attempts"),
        "{keys:?}"
    );
    let reference = reference();
    for key in keys {
        assert!(
            reference.contains(&format!("\n{key} = ")) && reference.contains(&format!("`{key}`")),
            "docs/reference.md does not document config key {key} (in the example config.toml and the table)"
        );
    }
}

#[test]
fn env_literals_reads_each_form() {
    let src = r#"env("GBDFL_A") env_nonempty("GBDFL_B") std::env::var("C_D") var_os("E")
        (ctx.env)("NO_COLOR") #[arg(env = "GBDFL_T")] format!("GBDFL_NOT_READ") env("lower")"#;
    let names: Vec<String> = env_literals(src).into_iter().collect();
    assert_eq!(
        names,
        ["C_D", "E", "GBDFL_A", "GBDFL_B", "GBDFL_T", "NO_COLOR"]
    );
}

#[test]
fn readme_starts_with_the_two_commands_and_links_every_guide() {
    let readme = doc("README.md");
    let first_block: String = readme.lines().take(8).collect::<Vec<_>>().join("\n");
    assert!(
        first_block.contains("cargo run --release -- demo"),
        "{first_block}"
    );
    assert!(first_block.contains("cargo test"), "{first_block}");
    for guide in [
        "docs/offline.md",
        "docs/reports.md",
        "docs/auditing.md",
        "docs/administration.md",
        "docs/reference.md",
        "docs/emulator.md",
        "docs/FORMAT.md",
        "docs/SECURITY.md",
        "BENCHMARKS.md",
    ] {
        assert!(
            readme.contains(&format!("]({guide}")),
            "README.md links {guide}"
        );
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(guide).is_file(),
            "{guide} exists"
        );
    }
}
