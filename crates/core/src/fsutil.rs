//! Small filesystem helpers shared by the key file, the store and reports.
//!
//! Rule this module keeps: everything gbdfl creates that may hold personal
//! data or secrets (folders, the database, key files, reports, their temp
//! files) is created readable by its owner only, from the first byte,
//! whatever the umask (tests/cli/secrets.rs, tests/cli/init.rs).

use std::fs;
use std::io;
use std::path::Path;

/// Creates `dir` and its missing parents; new folders get mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Makes an existing file owner-only (0600). A no-op off Unix.
pub fn restrict_to_owner(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Creates a new file with mode 0600, failing if it exists.
pub fn create_private_file(path: &Path) -> io::Result<fs::File> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}
