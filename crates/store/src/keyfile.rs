//! The key file: where the master key lives on disk, apart from the database.
//!
//! Rules this module keeps: a key file is created once, with mode 0600, and
//! never overwritten (`create_load_round_trip_and_never_overwrite`); a key
//! file that the group or others can read, write or run, or that is not a
//! regular file, is refused before its contents are read (one check,
//! [`check_private`], exit code 8: `refuses_readable_and_truncated`,
//! `hostile::a_key_file_others_can_read_is_refused_before_it_is_read` and
//! `ranges::every_key_file_problem_is_exit_8_with_advice_that_fits` in
//! tests/cli); the contents never appear in an error
//! (`hostile::a_truncated_key_file_is_refused_before_any_call`).
//!
//! Format (docs/FORMAT.md): one line, `gbdfl-key-v1:` followed by the 32-byte
//! master key as 64 lowercase hex digits, then a newline.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use zeroize::Zeroizing;

use gbdfl_core::private_file::io_err;
pub use gbdfl_core::private_file::{KeyFileError, check_private};

use crate::crypto::{KEY_LEN, MasterKey};

const PREFIX: &str = "gbdfl-key-v1:";

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
        gbdfl_core::fsutil::create_private_dir(dir).map_err(io_err(dir))?;
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
