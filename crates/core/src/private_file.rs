//! Files that hold secrets (the master key, the proxy password): the one
//! permission check they all pass before a byte is read, and its errors.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Nothing at the path, and no database needs this key yet.
    #[error(
        "no key file at {0}: run `gbdfl init` to create one, or pass the right file with --key-file PATH"
    )]
    Missing(PathBuf),
    #[error(
        "key file {path} has mode {mode:o}: {}; only its owner may read or write it. Run `chmod 600 {path}`{}",
        open_bits(*mode),
        if mode & 0o044 != 0 { " and check who may have copied it" } else { " and check that it is the key you created" }
    )]
    /// The group or others may read or write the file.
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    #[error(
        "key file {path} is {what}, not a regular file: pass the key file itself (one line `gbdfl-key-v1:...`) with --key-file PATH"
    )]
    /// The path is a directory, a device or something else that is not a
    /// regular file.
    NotAFile {
        /// The path given.
        path: PathBuf,
        /// What it is instead, in words (`a directory`).
        what: &'static str,
    },
    #[error(
        "no key file at {key}, but the database {db} exists: it opens only with the key it was created with. Pass that key file with --key-file PATH, or restore it from your backup (a new key, and `gbdfl init`, cannot open this database)"
    )]
    /// The key file is gone but the database it encrypts is there: a new
    /// key would not open it.
    MissingForDatabase {
        /// Where the key file was looked for.
        key: PathBuf,
        /// The database that needs it.
        db: PathBuf,
    },
    #[error(
        "key file {0} is not a gbdfl key (expected one line `gbdfl-key-v1:` and 64 hex digits; it may be truncated or the wrong file): pass the key file this database was created with, --key-file PATH"
    )]
    /// The file is not one line `gbdfl-key-v1:` and 64 hex digits.
    Malformed(PathBuf),
    /// `init` found a key file where it would write one.
    #[error("a key file already exists at {0}; gbdfl never overwrites a key")]
    Exists(PathBuf),
    #[error("key file {path}: {source}")]
    /// Reading or checking the file failed otherwise.
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// Turns an I/O error on the file at `path` into [`KeyFileError::Io`],
/// for `map_err`.
pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Which of the group's and others' permission bits are set, in words:
/// `the group can write it`, `the group and others can read it`.
fn open_bits(mode: u32) -> String {
    let who = |read: u32, write: u32, exec: u32| {
        [(read, "read"), (write, "write"), (exec, "execute")]
            .into_iter()
            .filter(|&(bit, _)| mode & bit != 0)
            .map(|(_, what)| what)
            .collect::<Vec<_>>()
    };
    let (group, others) = (who(0o040, 0o020, 0o010), who(0o004, 0o002, 0o001));
    let can = |v: &[&str]| v.join(", ");
    match (group.is_empty(), others.is_empty()) {
        (false, false) if group == others => format!("the group and others can {} it", can(&group)),
        (false, false) => format!(
            "the group can {} it, others can {} it",
            can(&group),
            can(&others)
        ),
        (false, true) => format!("the group can {} it", can(&group)),
        _ => format!("others can {} it", can(&others)),
    }
}

/// What a path that is not a regular file is, for the message.
fn kind_of(meta: &fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    Some(if t.is_dir() {
        "a directory"
    } else {
        "a device, pipe or socket"
    })
}

/// Refuses what is not a regular file, and a file that the group or
/// others may read, write or run. The one check of every key file.
pub fn check_private(path: &Path) -> Result<(), KeyFileError> {
    let meta = fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            KeyFileError::Missing(path.to_owned())
        } else {
            io_err(path)(e)
        }
    })?;
    if let Some(what) = kind_of(&meta) {
        return Err(KeyFileError::NotAFile {
            path: path.to_owned(),
            what,
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}
