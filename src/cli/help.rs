//! `gbdfl --help` with the commands grouped by task (look people up, work
//! offline, reports, audit, administration, trying it out).
//!
//! clap 4 has no subcommand groups, so the top-level help template is built
//! here: clap renders the one flat list (its alignment, wrapping and
//! styles), and each command's entry is moved under its group's heading.
//! The about strings stay where they are, next to each command's code.
//! Rule this module keeps: no visible command is ever left out of the help;
//! one missing from [`GROUPS`] is listed under "Other commands" (and the
//! test `every_command_is_in_exactly_one_group` fails until it is placed).
//!
//! It also lists the environment variables the clap definitions and the
//! settings read ([`env_vars`]), so a test can hold the reference docs to
//! them.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use clap::{CommandFactory as _, FromArgMatches as _};

use super::Cli;

/// The groups of `gbdfl --help`, in order, with their commands in order.
/// A name that is not a command of this build is skipped.
pub const GROUPS: &[(&str, &[&str])] = &[
    ("Look people up", &["fetch", "show", "history"]),
    ("Work offline", &["sync", "batch", "queue"]),
    ("Reports", &["expiring", "report", "stats"]),
    ("Audit", &["audit", "check"]),
    ("Head office", &["push", "pull", "central"]),
    (
        "Administration",
        &[
            "init",
            "config",
            "doctor",
            "backup",
            "rekey",
            "purge",
            "import",
            "export",
            "completions",
            "man",
        ],
    ),
    ("Try it out", &["demo", "mock-server", "help"]),
];

/// The heading of commands no group names (kept visible, never dropped).
const OTHER: &str = "Other commands";

/// The clap command of gbdfl, with the grouped top-level help.
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    let template = template(&cmd);
    cmd.help_template(template)
}

/// Parses the process arguments (exits with clap's message on a usage error).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The environment variables the binary reads through its clap
/// definitions (`env = ...` of any argument of any command) and through
/// [`Settings`](crate::config::Settings) and the worker-thread count (found
/// by resolving them with an environment that records each name asked
/// for). Variables a command reads on its own (`NO_COLOR`) are not in this
/// list.
pub fn env_vars() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, names: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(name) = arg.get_env() {
                names.insert(name.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, names);
        }
    }
    let mut names = BTreeSet::new();
    walk(&command(), &mut names);
    let asked = RefCell::new(BTreeSet::new());
    let env = |k: &str| {
        asked.borrow_mut().insert(k.to_owned());
        // An empty config file, so no file of the user's can stop the walk
        // before every setting was asked for.
        (k == "GBDFL_CONFIG" && cfg!(unix)).then(|| "/dev/null".to_owned())
    };
    if let Ok(settings) = crate::config::Settings::resolve(&crate::config::Flags::default(), &env) {
        let _ = settings.api_key(&env);
    }
    let _ = gbdfl_core::limits::threads(None, &env);
    names.extend(asked.into_inner());
    names
}

/// Each visible command's entry as clap renders it in its flat list (name,
/// padding, wrapped about), by command name, in clap's order.
fn entries(cmd: &clap::Command) -> Vec<(String, String)> {
    // The same command (so the same width and styles), showing only the list.
    let mut flat = cmd.clone().help_template("{subcommands}");
    let styled = flat.render_help();
    let (plain, ansi) = (styled.to_string(), styled.ansi().to_string());
    let mut out: Vec<(String, String)> = Vec::new();
    // The plain and the styled text have the same lines; an entry starts
    // where the plain line starts with exactly two spaces, then its name.
    for (p, a) in plain.lines().zip(ansi.lines()) {
        let starts_entry = p.starts_with("  ") && !p[2..].starts_with(' ');
        match (starts_entry, out.last_mut()) {
            (true, _) | (false, None) => {
                let name = p.split_whitespace().next().unwrap_or_default();
                out.push((name.trim_end_matches(',').to_owned(), format!("{a}\n")));
            }
            (false, Some((_, text))) => {
                text.push_str(a);
                text.push('\n');
            }
        }
    }
    out
}

/// The command names of each heading, in help order; commands no group
/// names go under [`OTHER`].
fn layout(names: &[String]) -> Vec<(&'static str, Vec<String>)> {
    let mut groups: Vec<(&'static str, Vec<String>)> = GROUPS
        .iter()
        .map(|(heading, members)| {
            let present = members
                .iter()
                .filter(|m| names.iter().any(|n| n == *m))
                .map(|m| m.to_string())
                .collect();
            (*heading, present)
        })
        .collect();
    let other: Vec<String> = names
        .iter()
        .filter(|n| !GROUPS.iter().any(|(_, m)| m.contains(&n.as_str())))
        .cloned()
        .collect();
    if !other.is_empty() {
        groups.push((OTHER, other));
    }
    groups.retain(|(_, members)| !members.is_empty());
    groups
}

/// The top-level help template: about, usage, the grouped commands, then
/// the global options under their own heading.
fn template(cmd: &clap::Command) -> String {
    let entries = entries(cmd);
    let names: Vec<String> = entries.iter().map(|(n, _)| n.clone()).collect();
    let text: BTreeMap<&str, &str> = entries
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let header = cmd.get_styles().get_header();
    let mut t = String::from("{before-help}{about-with-newline}\n{usage-heading} {usage}\n");
    for (heading, members) in layout(&names) {
        let _ = write!(t, "\n{header}{heading}:{header:#}\n");
        for m in members {
            t.push_str(text.get(m.as_str()).copied().unwrap_or_default());
        }
    }
    // clap echoes an unknown `{tag}` as written, so braces in an about stay.
    let _ = write!(
        t,
        "\n{header}Global options:{header:#}\n{{options}}{{after-help}}"
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_in_exactly_one_group() {
        let cmd = Cli::command();
        let visible: Vec<String> = entries(&cmd).into_iter().map(|(n, _)| n).collect();
        assert!(visible.len() > 10, "clap's flat list was read: {visible:?}");
        for name in &visible {
            let homes: Vec<&str> = GROUPS
                .iter()
                .filter(|(_, m)| m.contains(&name.as_str()))
                .map(|(h, _)| *h)
                .collect();
            assert_eq!(
                homes.len(),
                1,
                "command {name} must be in exactly one group of cli::help::GROUPS, is in {homes:?}"
            );
        }
    }

    #[test]
    fn env_vars_come_from_clap_and_the_settings() {
        let names = env_vars();
        for name in [
            "GBDFL_THREADS",
            "GBDFL_DB",
            "GBDFL_API_KEY",
            "GBDFL_RETRY_CAP",
        ] {
            assert!(names.contains(name), "{name} in {names:?}");
        }
    }

    #[test]
    fn a_command_no_group_names_is_still_listed() {
        let names = vec!["fetch".to_owned(), "frobnicate".to_owned()];
        let groups = layout(&names);
        assert_eq!(
            groups,
            vec![
                ("Look people up", vec!["fetch".to_owned()]),
                (OTHER, vec!["frobnicate".to_owned()]),
            ]
        );
    }

    #[test]
    fn help_lists_each_command_once_under_its_heading() {
        let help = command().render_help().to_string();
        for (heading, members) in GROUPS {
            let at = help
                .find(&format!("\n{heading}:\n"))
                .unwrap_or_else(|| panic!("no heading {heading} in\n{help}"));
            for m in members
                .iter()
                .filter(|m| Cli::command().find_subcommand(m).is_some())
            {
                let line = format!("\n  {m} ");
                assert_eq!(help.matches(&line).count(), 1, "{m} once in\n{help}");
                assert!(help.find(&line).unwrap() > at, "{m} after {heading}");
            }
        }
        assert!(help.contains("\nGlobal options:\n"), "{help}");
        assert!(help.contains("--key-file"), "{help}");
    }
}
