//! The layering of the workspace, checked. Between crates: which crate may
//! reach which, read from `cargo tree` over normal dependencies (a test's
//! dev-dependencies do not count), and what the production build leaves
//! out. Inside a crate: no import cycle between its modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo tree --offline -e normal` of the workspace with `args` added:
/// its output, or the error cargo gave.
fn cargo_tree(args: &[&str]) -> Result<String, String> {
    let out = Command::new(env!("CARGO"))
        .arg("tree")
        .arg("--offline")
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .args(["-e", "normal"])
        .args(args)
        .output()
        .expect("run cargo tree");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "cargo tree {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Every package the selection reaches, with its enabled features.
fn packages(select: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut args = select.to_vec();
    args.extend(["--prefix", "none", "--format", "{p}|{f}"]);
    let text = cargo_tree(&args).unwrap_or_else(|e| panic!("{e}"));
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (package, features) = line.split_once('|').unwrap_or((line, ""));
        let name = package.split_whitespace().next().unwrap_or_default();
        let features = features.trim().trim_end_matches("(*)").trim();
        found.entry(name.to_string()).or_default().extend(
            features
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_string),
        );
    }
    assert!(
        !found.is_empty(),
        "cargo tree {} listed no package",
        select.join(" ")
    );
    found
}

/// How the selection reaches `package`: the inverted tree cargo shows.
fn path_to(select: &[&str], package: &str) -> String {
    let mut args = select.to_vec();
    args.extend(["-i", package]);
    cargo_tree(&args).unwrap_or_else(|e| e)
}

/// Fails, showing each path, if the selection reaches any of `forbidden`.
fn assert_unreachable(select: &[&str], forbidden: &[&str]) {
    let present = packages(select);
    let own = select
        .iter()
        .skip_while(|a| **a != "-p")
        .nth(1)
        .expect("a -p in the selection");
    assert!(
        present.contains_key(*own),
        "cargo tree {} does not list {own} itself",
        select.join(" ")
    );
    let found: Vec<String> = forbidden
        .iter()
        .filter(|f| present.contains_key(**f))
        .map(|f| {
            format!(
                "`cargo tree -e normal {}` reaches {f}, which this layer must not:\n{}",
                select.join(" "),
                path_to(select, f)
            )
        })
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn core_names_no_other_crate_of_ours() {
    let select = ["-p", "gbdfl-core"];
    let ours: Vec<String> = packages(&select)
        .into_keys()
        .filter(|p| p.starts_with("gbdfl") && p != "gbdfl-core")
        .collect();
    let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
    assert_unreachable(&select, &ours);
}

#[test]
fn core_reaches_no_database_no_http_no_clap_and_no_thread_pool() {
    assert_unreachable(
        &["-p", "gbdfl-core"],
        &["rusqlite", "reqwest", "hyper", "clap", "rayon"],
    );
}

#[test]
fn store_reaches_no_http_and_no_layer_above_it() {
    assert_unreachable(
        &["-p", "gbdfl-store"],
        &[
            "gbdfl-client",
            "gbdfl-service",
            "gbdfl-report",
            "gbdfl-emulator",
            "gbdfl-central",
            "postgres",
            "reqwest",
            "hyper",
            "axum",
        ],
    );
}

#[test]
fn central_reaches_no_http_client_no_service_and_no_report() {
    assert_unreachable(
        &["-p", "gbdfl-central"],
        &[
            "gbdfl-client",
            "gbdfl-service",
            "gbdfl-report",
            "gbdfl-emulator",
            "reqwest",
            "hyper",
            "axum",
        ],
    );
}

#[test]
fn client_reaches_no_store_and_no_layer_above_it() {
    assert_unreachable(
        &["-p", "gbdfl-client"],
        &[
            "gbdfl-store",
            "gbdfl-service",
            "gbdfl-report",
            "gbdfl-emulator",
            "gbdfl-central",
            "postgres",
            "rusqlite",
            "axum",
        ],
    );
}

#[test]
fn service_reaches_neither_reports_nor_the_emulator() {
    assert_unreachable(
        &["-p", "gbdfl-service"],
        &[
            "gbdfl-report",
            "gbdfl-emulator",
            "gbdfl-central",
            "postgres",
            "axum",
        ],
    );
}

#[test]
fn report_reaches_neither_the_service_nor_http() {
    assert_unreachable(
        &["-p", "gbdfl-report"],
        &[
            "gbdfl-client",
            "gbdfl-service",
            "gbdfl-emulator",
            "gbdfl-central",
            "postgres",
            "reqwest",
            "hyper",
            "axum",
        ],
    );
}

/// zstd's features in the selection, and how they were enabled.
fn zstd_features(select: &[&str]) -> (BTreeSet<String>, String) {
    let features = packages(select).remove("zstd").unwrap_or_default();
    let mut args = select.to_vec();
    args.extend(["-e", "features", "-i", "zstd"]);
    (features, cargo_tree(&args).unwrap_or_else(|e| e))
}

#[test]
fn the_production_build_has_no_emulator_no_server_and_no_dictionary_builder() {
    let production = ["-p", "gbdfl", "--no-default-features"];
    assert_unreachable(&production, &["gbdfl-emulator", "axum", "axum-core"]);
    // reqwest runs its own client on tower; nothing else may bring it in.
    assert_unreachable(
        &["-p", "gbdfl", "--no-default-features", "--prune", "reqwest"],
        &["tower", "tower-http"],
    );
    let (zstd, how) = zstd_features(&production);
    assert!(
        !zstd.contains("zdict_builder"),
        "the production build has zstd's dictionary builder:\n{how}"
    );
}

/// The check above sees the feature: the default (`dev`) build does have
/// what the production build must not.
#[test]
fn the_dev_build_has_the_emulator_and_the_dictionary_builder() {
    let dev = ["-p", "gbdfl"];
    let present = packages(&dev);
    for package in ["gbdfl-emulator", "axum"] {
        assert!(
            present.contains_key(package),
            "the default build of gbdfl lacks {package}"
        );
    }
    let (zstd, how) = zstd_features(&dev);
    assert!(
        zstd.contains("zdict_builder"),
        "the default build lacks zstd's dictionary builder:\n{how}"
    );
}

// The import graph of the modules of a crate.
//
// A node is a module with a file of its own; a directory module is one node
// with everything under it. A crate's root (lib.rs, main.rs) and a
// directory's mod.rs are not nodes: they declare the modules below them,
// so a path to an item defined there is no edge. An edge A -> B is a path
// from code in A (or below it) that names B (or an item below it):
// `crate::b::..`, `super::b`, `self::b`, a `use` tree with groups over any
// number of lines, or a name re-exported by a `use` in a module (the root's
// `pub use b::Thing` makes `crate::Thing` an edge to b). Edges are counted
// between the children of the nearest common parent, so one pass gives the
// graph of a crate's top-level modules and the graph of the submodules
// inside each directory module. A module under `#[cfg(test)]` (a unit
// test's `mod tests`) is no part of the module it sits in: it uses that
// module, and may use test helpers that use it too, so its paths are no
// edges. Comments, strings and characters are skipped; glob imports
// (`use super::*`) are not followed.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

struct Token {
    tok: Tok,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Skips a quoted literal opened at `c[i]` (`"` or `'`), escapes honoured;
/// returns the index after its closing quote.
fn skip_quoted(c: &[char], mut i: usize, quote: char, line: &mut usize) -> usize {
    i += 1;
    while i < c.len() && c[i] != quote {
        if c[i] == '\\' {
            i += 1;
        }
        if i < c.len() && c[i] == '\n' {
            *line += 1;
        }
        i += 1;
    }
    i + 1
}

fn tokenize(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_quoted(&c, i, '"', &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                i = skip_quoted(&c, i, '\'', &mut line);
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or a label: its name follows as an identifier.
                i += 1;
            }
        } else if is_ident_start(ch) {
            // Byte, C and raw strings, byte characters, raw identifiers.
            let mut j = i;
            if matches!(ch, 'b' | 'c') {
                j += 1;
            }
            if at(j) == 'r' && (at(j + 1) == '"' || at(j + 1) == '#') {
                let mut k = j + 1;
                let mut hashes = 0;
                while at(k) == '#' {
                    hashes += 1;
                    k += 1;
                }
                if at(k) == '"' {
                    k += 1;
                    loop {
                        if k >= c.len() {
                            break;
                        }
                        if c[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#') {
                            k += 1 + hashes;
                            break;
                        }
                        if c[k] == '\n' {
                            line += 1;
                        }
                        k += 1;
                    }
                    i = k;
                    continue;
                }
                if j == i && hashes == 1 && is_ident_start(at(k)) {
                    // r#ident
                    i = k;
                    continue;
                }
            }
            if j > i && at(j) == '"' {
                i = skip_quoted(&c, j, '"', &mut line);
                continue;
            }
            if ch == 'b' && at(i + 1) == '\'' {
                i += 1;
                continue;
            }
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(c[start..i].iter().collect()),
                line,
            });
        } else if ch.is_ascii_digit() {
            // A number, suffix and fraction included (not the `..` of a range).
            while i < c.len()
                && (is_ident_char(c[i]) || (c[i] == '.' && at(i + 1).is_ascii_digit()))
            {
                i += 1;
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

type ModPath = Vec<String>;

/// One path of the source that names something of the crate.
struct Ref {
    from: ModPath,
    target: ModPath,
    text: String,
    file: String,
    line: usize,
}

/// What the files of one crate say.
#[derive(Default)]
struct Parsed {
    /// Modules with a file of their own.
    files: BTreeSet<ModPath>,
    /// All modules: with a file, and inline (`mod tests { .. }`).
    modules: BTreeSet<ModPath>,
    /// Per module, the names its `use` items bring in, and what they name.
    imports: BTreeMap<ModPath, BTreeMap<String, ModPath>>,
    refs: Vec<Ref>,
    /// Modules under `#[cfg(test)]`: unit tests, above what they test.
    test_modules: BTreeSet<ModPath>,
}

/// Whether the item whose `mod` is at `t[i]` has `#[cfg(test)]` among its
/// attributes.
fn cfg_test_before(t: &[Token], i: usize) -> bool {
    let item_start = t[..i]
        .iter()
        .rposition(|t| matches!(t.tok, Tok::Punct(';' | '{' | '}')))
        .map_or(0, |p| p + 1);
    let words: Vec<&Tok> = t[item_start..i].iter().map(|t| &t.tok).collect();
    words.windows(4).any(|w| {
        *w[0] == Tok::Ident("cfg".into())
            && *w[1] == Tok::Punct('(')
            && *w[2] == Tok::Ident("test".into())
            && *w[3] == Tok::Punct(')')
    })
}

/// The module a file under src/ holds: `a.rs`, `a/mod.rs` -> [a];
/// `a/b.rs` -> [a, b]; lib.rs and main.rs -> the root.
fn module_of(rel: &str) -> ModPath {
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    let at_root = parts.is_empty();
    if !(stem == "mod" || (at_root && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_string());
    }
    parts
}

/// A `use` tree from `t[*i]`: each leaf's path (after `prefix`) and the
/// name it brings in (None for a glob or `_`).
fn parse_use_tree(
    t: &[Token],
    i: &mut usize,
    prefix: &[String],
    out: &mut Vec<(ModPath, Option<String>, usize)>,
) {
    let tok = |i: usize| t.get(i).map(|t| t.tok.clone()).unwrap_or(Tok::Punct(';'));
    let mut path = prefix.to_vec();
    loop {
        let line = t.get(*i).map_or(0, |t| t.line);
        match tok(*i) {
            Tok::Ident(s)
                if s == "self"
                    && !prefix.is_empty()
                    && path.len() == prefix.len()
                    && tok(*i + 1) != Tok::PathSep =>
            {
                *i += 1;
                let mut name = prefix.last().cloned();
                if tok(*i) == Tok::Ident("as".into()) {
                    if let Tok::Ident(alias) = tok(*i + 1) {
                        name = Some(alias);
                    }
                    *i += 2;
                }
                out.push((path, name.filter(|n| n != "_"), line));
                return;
            }
            Tok::Ident(s) => {
                path.push(s.clone());
                *i += 1;
                if tok(*i) == Tok::PathSep {
                    *i += 1;
                    continue;
                }
                let mut name = s;
                if tok(*i) == Tok::Ident("as".into()) {
                    if let Tok::Ident(alias) = tok(*i + 1) {
                        name = alias;
                    }
                    *i += 2;
                }
                out.push((path, Some(name).filter(|n| n != "_"), line));
                return;
            }
            Tok::Punct('*') => {
                *i += 1;
                out.push((path, None, line));
                return;
            }
            Tok::Punct('{') => {
                *i += 1;
                loop {
                    match tok(*i) {
                        Tok::Punct('}') => {
                            *i += 1;
                            return;
                        }
                        Tok::Punct(';') => return,
                        _ => {}
                    }
                    let before = *i;
                    parse_use_tree(t, i, &path, out);
                    // Past the comma, or past a token no tree starts with.
                    if tok(*i) == Tok::Punct(',') || *i == before {
                        *i += 1;
                    }
                }
            }
            Tok::PathSep => {
                // `use ::name`: another crate.
                path.push("::".into());
                *i += 1;
            }
            _ => return,
        }
    }
}

/// A path as seen from module `here`, made absolute (from the crate root),
/// or None if it names another crate or a local item.
fn absolute(segs: &[String], here: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let first = segs.first()?;
    let (mut base, mut rest) = match first.as_str() {
        "crate" => (Vec::new(), &segs[1..]),
        "self" => (here.to_vec(), &segs[1..]),
        "super" => (here[..here.len().checked_sub(1)?].to_vec(), &segs[1..]),
        _ => {
            let mut child = here.to_vec();
            child.push(first.clone());
            if !modules.contains(&child) {
                return None;
            }
            (here.to_vec(), segs)
        }
    };
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(base)
}

/// Reads one file into `p`: its inline modules, its imports and its paths.
fn parse_file(p: &mut Parsed, rel: &str, display: &str, src: &str) {
    let t = tokenize(src);
    let file_module = module_of(rel);
    let ident = |i: usize| match t.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let tok = |i: usize| t.get(i).map(|t| &t.tok);
    // Inline modules open here: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut uses: Vec<(ModPath, ModPath, Option<String>, usize)> = Vec::new();
    let mut paths: Vec<(ModPath, ModPath, usize)> = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let mut here = file_module.clone();
        here.extend(inline.iter().map(|(n, _)| n.clone()));
        match &t[i].tok {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
                i += 1;
            }
            Tok::Ident(s) if s == "mod" => {
                if let Some(name) = ident(i + 1) {
                    let mut m = here.clone();
                    m.push(name.to_string());
                    if cfg_test_before(&t, i) {
                        p.test_modules.insert(m.clone());
                    }
                    if tok(i + 2) == Some(&Tok::Punct('{')) {
                        depth += 1;
                        inline.push((name.to_string(), depth));
                        p.modules.insert(m);
                        i += 3;
                        continue;
                    }
                }
                i += 1;
            }
            Tok::Ident(s) if s == "use" => {
                i += 1;
                let mut leaves = Vec::new();
                parse_use_tree(&t, &mut i, &[], &mut leaves);
                for (path, name, line) in leaves {
                    uses.push((here.clone(), path, name, line));
                }
            }
            Tok::Ident(_)
                if tok(i + 1) == Some(&Tok::PathSep)
                    && i.checked_sub(1).and_then(tok) != Some(&Tok::PathSep) =>
            {
                let line = t[i].line;
                let mut segs = Vec::new();
                while let Some(s) = ident(i) {
                    segs.push(s.to_string());
                    i += 1;
                    if tok(i) == Some(&Tok::PathSep) && ident(i + 1).is_some() {
                        i += 1;
                    } else {
                        break;
                    }
                }
                paths.push((here.clone(), segs, line));
            }
            _ => i += 1,
        }
    }
    for (here, path, name, line) in uses {
        let Some(target) = absolute(&path, &here, &p.modules) else {
            continue;
        };
        if let Some(name) = name {
            p.imports
                .entry(here.clone())
                .or_default()
                .insert(name, target.clone());
        }
        p.refs.push(Ref {
            from: here,
            target,
            text: format!("use {}", path.join("::")),
            file: display.to_string(),
            line,
        });
    }
    for (here, segs, line) in paths {
        if let Some(target) = absolute(&segs, &here, &p.modules) {
            p.refs.push(Ref {
                from: here,
                target,
                text: segs.join("::"),
                file: display.to_string(),
                line,
            });
        }
    }
}

/// Follows `use` items: `crate::Thing` where the root has `use b::Thing`
/// becomes `b::Thing`.
fn resolve(target: &[String], p: &Parsed) -> ModPath {
    let mut t = target.to_vec();
    for _ in 0..32 {
        let mut next = None;
        for k in 0..t.len() {
            let module = &t[..k];
            if k > 0 && !p.modules.contains(module) {
                break;
            }
            if p.modules.contains(&t[..=k]) {
                continue;
            }
            if let Some(dest) = p.imports.get(module).and_then(|m| m.get(&t[k])) {
                if dest.as_slice() != &t[..=k] {
                    let mut n = dest.clone();
                    n.extend_from_slice(&t[k + 1..]);
                    next = Some(n);
                }
                break;
            }
        }
        match next {
            Some(n) => t = n,
            None => break,
        }
    }
    t
}

/// Per parent module (the root is []), the edges between its children:
/// from -> to -> the first path that made the edge.
type Graphs = BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, String>>>;

/// The module graphs of a crate given as (path under src/, source) pairs.
fn module_graphs(dir: &str, files: &[(String, String)]) -> Graphs {
    let mut p = Parsed::default();
    for (rel, _) in files {
        let m = module_of(rel);
        if !m.is_empty() {
            p.files.insert(m.clone());
            p.modules.insert(m);
        }
    }
    // Inline modules first: a path may name one before its file is read.
    for (rel, src) in files {
        let mut scratch = Parsed {
            files: p.files.clone(),
            modules: p.modules.clone(),
            ..Parsed::default()
        };
        parse_file(&mut scratch, rel, rel, src);
        p.modules.extend(scratch.modules);
    }
    for (rel, src) in files {
        parse_file(&mut p, rel, &format!("{dir}/{rel}"), src);
    }
    let mut graphs = Graphs::new();
    for r in &p.refs {
        if (1..=r.from.len()).any(|k| p.test_modules.contains(&r.from[..k])) {
            continue;
        }
        let target = resolve(&r.target, &p);
        let common = r
            .from
            .iter()
            .zip(&target)
            .take_while(|(a, b)| a == b)
            .count();
        if r.from.len() <= common || target.len() <= common {
            continue;
        }
        let (a, b) = (&r.from[..=common], &target[..=common]);
        if !(p.files.contains(a) && p.files.contains(b)) {
            continue;
        }
        graphs
            .entry(r.from[..common].to_vec())
            .or_default()
            .entry(a[common].clone())
            .or_default()
            .entry(b[common].clone())
            .or_insert_with(|| format!("{}:{} `{}`", r.file, r.line, r.text));
    }
    graphs
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

/// One cycle through the first node of `component`, edge by edge, with the
/// path of the source that makes each edge.
fn describe_cycle(
    graph: &BTreeMap<String, BTreeMap<String, String>>,
    component: &[String],
) -> String {
    let start = &component[0];
    // Breadth-first from start back to start, inside the component.
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut last = None;
    'search: while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
            if !component.contains(w) {
                continue;
            }
            if w == start {
                last = Some(v);
                break 'search;
            }
            if !came_from.contains_key(w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    let mut between = Vec::new();
    let mut v = last.expect("a cycle in a strongly connected component");
    while v != start {
        between.push(v);
        v = came_from[v];
    }
    between.reverse();
    let mut cycle = vec![start];
    cycle.extend(between);
    cycle.push(start);
    let mut text = cycle
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" -> ");
    for pair in cycle.windows(2) {
        text.push_str(&format!(
            "\n    {} -> {}: {}",
            pair[0], pair[1], graph[pair[0]][pair[1]]
        ));
    }
    text
}

/// Every cycle in the graphs, described.
fn all_cycles(crate_name: &str, graphs: &Graphs) -> Vec<String> {
    let mut out = Vec::new();
    for (parent, graph) in graphs {
        let place = if parent.is_empty() {
            format!("{crate_name}: top-level modules")
        } else {
            format!("{crate_name}: modules inside {}", parent.join("::"))
        };
        for component in cycles(graph) {
            out.push(format!(
                "{place}: import cycle {}",
                describe_cycle(graph, &component)
            ));
        }
    }
    out
}

/// The .rs files under `dir`, as (path relative to dir, source).
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).unwrap();
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The source folders of the workspace: each crate's src/, the CLI's src/
/// and the integration tests.
fn source_dirs() -> Vec<String> {
    let root = workspace_root();
    let mut dirs: Vec<String> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| root.join("crates").join(name).join("src").is_dir())
        .map(|name| format!("crates/{name}/src"))
        .collect();
    dirs.sort();
    dirs.push("src".into());
    dirs.push("tests/cli".into());
    dirs
}

#[test]
fn no_import_cycle_between_the_modules_of_a_crate() {
    let root = workspace_root();
    let mut found = Vec::new();
    let mut service = None;
    for dir in source_dirs() {
        let graphs = module_graphs(&dir, &rust_files(&root.join(&dir)));
        let edges: usize = graphs
            .values()
            .flat_map(|g| g.values())
            .map(BTreeMap::len)
            .sum();
        println!("{dir}: {edges} edges between modules");
        for (parent, graph) in &graphs {
            for (from, to) in graph {
                let to: Vec<&str> = to.keys().map(String::as_str).collect();
                let from = parent.iter().chain([from]).cloned().collect::<Vec<_>>();
                println!("  {} -> {}", from.join("::"), to.join(", "));
            }
        }
        found.extend(all_cycles(&dir, &graphs));
        if dir == "crates/service/src" {
            service = Some(graphs);
        }
    }
    // The check reads real paths: sync names the backoff of its own module.
    let service = service.expect("crates/service/src read");
    assert!(
        service[&Vec::new()]["sync"].contains_key("backoff"),
        "no edge sync -> backoff read from crates/service/src: {service:?}"
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The reader of paths on a small crate with cycles at both levels.
#[test]
fn the_import_cycle_check_finds_cycles_through_groups_re_exports_and_super() {
    let files: Vec<(String, String)> = [
        ("lib.rs", "mod a;\nmod b;\nmod c;\npub use b::Thing;\n"),
        (
            "a.rs",
            "use crate::{\n    Thing,\n    c::{self, e::G as H},\n};\n",
        ),
        (
            "b.rs",
            "pub struct Thing;\npub fn f() { crate::c::e::g(); }\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::a;\n}\n",
        ),
        ("c/mod.rs", "mod e;\nmod f;\nmod g;\n"),
        (
            "c/e.rs",
            "// use crate::b; in a comment\npub fn g() { let s = \"crate::b\"; let c = '\"'; super::f::h(); }\n",
        ),
        (
            "c/f.rs",
            "use super::e;\npub fn h() { super::super::a::k(); let r = r#\"crate::b\"#; }\n",
        ),
        ("c/g.rs", "pub fn x<'a>(s: &'a str) { self::y(); }\n"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let graphs = module_graphs("fake", &files);
    let edges = |parent: &[&str]| -> BTreeSet<(String, String)> {
        let parent: ModPath = parent.iter().map(|s| s.to_string()).collect();
        graphs[&parent]
            .iter()
            .flat_map(|(a, to)| to.keys().map(|b| (a.clone(), b.clone())))
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> BTreeSet<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        edges(&[]),
        pairs(&[("a", "b"), ("a", "c"), ("b", "c"), ("c", "a")])
    );
    assert_eq!(edges(&["c"]), pairs(&[("e", "f"), ("f", "e")]));
    let cycles = all_cycles("fake", &graphs);
    assert_eq!(cycles.len(), 2, "{cycles:?}");
    assert!(
        cycles[0].starts_with("fake: top-level modules: import cycle a -> c -> a")
            && cycles[0].contains("a -> c: fake/a.rs:3 `use crate::c`")
            && cycles[0].contains("c -> a: fake/c/f.rs:2 `super::super::a::k`"),
        "{}",
        cycles[0]
    );
    assert!(
        cycles[1].starts_with("fake: modules inside c: import cycle e -> f -> e"),
        "{}",
        cycles[1]
    );
}
