//! The key file: where the master key lives on disk, apart from the database.
//!
//! Rules this module keeps: a key file is created once, with mode 0600, and
//! never overwritten; a key file that the group or others can read, write or
//! run, or that is not a regular file, is refused before its contents are
//! read (one check, [`check_private`], exit code 8); the contents never
//! appear in an error.
//!
//! Format (docs/FORMAT.md): one line, `gbdfl-key-v1:` followed by the 32-byte
//! master key as 64 lowercase hex digits, then a newline.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto::{KEY_LEN, MasterKey};

const PREFIX: &str = "gbdfl-key-v1:";

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "no key file at {0}: run `gbdfl init` to create one, or pass the right file with --key-file PATH"
    )]
    Missing(PathBuf),
    #[error(
        "key file {path} has mode {mode:o}: {}; only its owner may read or write it. Run `chmod 600 {path}`{}",
        open_bits(*mode),
        if mode & 0o044 != 0 { " and check who may have copied it" } else { " and check that it is the key you created" }
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "key file {path} is {what}, not a regular file: pass the key file itself (one line `gbdfl-key-v1:...`) with --key-file PATH"
    )]
    NotAFile { path: PathBuf, what: &'static str },
    #[error(
        "no key file at {key}, but the database {db} exists: it opens only with the key it was created with. Pass that key file with --key-file PATH, or restore it from your backup (a new key, and `gbdfl init`, cannot open this database)"
    )]
    MissingForDatabase { key: PathBuf, db: PathBuf },
    #[error(
        "key file {0} is not a gbdfl key (expected one line `gbdfl-key-v1:` and 64 hex digits; it may be truncated or the wrong file): pass the key file this database was created with, --key-file PATH"
    )]
    Malformed(PathBuf),
    #[error("a key file already exists at {0}; gbdfl never overwrites a key")]
    Exists(PathBuf),
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyFileError + '_ {
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

/// Reads the master key from `path`, after checking its permissions.
pub fn load(path: &Path) -> Result<MasterKey, KeyFileError> {
    check_private(path)?;
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidData {
            KeyFileError::Malformed(path.to_owned())
        } else {
            io_err(path)(e)
        }
    })?);
    let body = text
        .trim_end_matches(['\n', '\r'])
        .strip_prefix(PREFIX)
        .ok_or_else(|| KeyFileError::Malformed(path.to_owned()))?;
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    if body.len() != 2 * KEY_LEN || hex::decode_to_slice(body, bytes.as_mut()).is_err() {
        return Err(KeyFileError::Malformed(path.to_owned()));
    }
    Ok(MasterKey::from_bytes(*bytes))
}

/// Creates a new key file with mode 0600 holding `key`. Fails if anything
/// already exists at `path`: a key is never overwritten.
pub fn create(path: &Path, key: &MasterKey) -> Result<(), KeyFileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::create_private_dir(dir).map_err(io_err(dir))?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            KeyFileError::Exists(path.to_owned())
        } else {
            io_err(path)(e)
        }
    })?;
    let line = Zeroizing::new(format!("{PREFIX}{}\n", hex::encode(key.expose())));
    file.write_all(line.as_bytes()).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_round_trip_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = MasterKey::generate().unwrap();
        create(&path, &key).unwrap();
        assert_eq!(load(&path).unwrap().expose(), key.expose());
        assert!(matches!(create(&path, &key), Err(KeyFileError::Exists(_))));
    }

    #[cfg(unix)]
    #[test]
    fn refuses_readable_and_truncated() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        create(&path, &MasterKey::generate().unwrap()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&path).unwrap_err();
        assert!(matches!(e, KeyFileError::TooOpen { .. }));
        assert!(
            e.to_string().contains("the group and others can read it"),
            "{e}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o620)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("mode 620: the group can write it;"), "{e}");
        assert!(!e.contains("read it"), "{e}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o647)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("the group can read it, others can read, write, execute it"),
            "{e}"
        );
        let e = load(dir.path()).unwrap_err();
        assert!(
            matches!(
                e,
                KeyFileError::NotAFile {
                    what: "a directory",
                    ..
                }
            ),
            "{e}"
        );
        let e = load(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(
            e.contains("not a regular file") && !e.contains("chmod"),
            "{e}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, &text[..40]).unwrap();
        assert!(matches!(load(&path), Err(KeyFileError::Malformed(_))));
    }
}
