//! The report file: written under a temporary, owner-only name beside its
//! destination and renamed over it when complete.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::ReportError;
use gbdfl_core::fsutil;

/// A file written under a temporary name beside its destination and
/// renamed over it when complete (a [`tempfile::NamedTempFile`] made in the
/// destination's folder). Dropped without [`commit`](Self::commit), it
/// removes the temporary file; killed, it leaves only that hidden
/// `.<name>.<random>.tmp` file, never a partial file under the final name.
pub struct AtomicFile {
    dest: PathBuf,
    file: Option<io::BufWriter<NamedTempFile>>,
    /// Bytes written since the disk was last asked to start writing.
    unflushed: usize,
}

/// After this many bytes, the disk is asked to start writing what it has
/// (Linux): a 150 MB report is then mostly on disk when `commit` syncs,
/// instead of all of it waiting for that sync.
const WRITEBACK: usize = 16 << 20;

impl AtomicFile {
    /// Creates the folder (0700) if missing and the temp file (0600 from
    /// its first byte) beside `dest`.
    pub fn create(dest: &Path) -> Result<AtomicFile, ReportError> {
        let io_err = |source| ReportError::Io {
            path: dest.to_owned(),
            source,
        };
        let dir = dest.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            fsutil::create_private_dir(dir).map_err(io_err)?;
        }
        let name = dest
            .file_name()
            .ok_or_else(|| io_err(io::Error::other("the output path names no file")))?;
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let mut temp = tempfile::Builder::new();
        temp.prefix(&prefix).suffix(".tmp").rand_bytes(8);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            temp.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let dir = dir.unwrap_or(Path::new("."));
        let file = temp.tempfile_in(dir).map_err(|source| ReportError::Io {
            path: dir.join(&prefix),
            source,
        })?;
        Ok(AtomicFile {
            dest: dest.to_owned(),
            file: Some(io::BufWriter::with_capacity(64 * 1024, file)),
            unflushed: 0,
        })
    }

    /// The temporary file's path (for tests and messages).
    pub fn temp_path(&self) -> &Path {
        self.file.as_ref().expect("not committed").get_ref().path()
    }

    /// Flushes, syncs and renames the file to its destination.
    pub fn commit(mut self) -> Result<(), ReportError> {
        let io_err = |source| ReportError::Io {
            path: self.dest.clone(),
            source,
        };
        let file = self.file.take().expect("committed once");
        let file = file.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.as_file().sync_all().map_err(io_err)?;
        file.persist(&self.dest).map_err(|e| io_err(e.error))?;
        // Make the rename itself durable; a failure here loses nothing.
        #[cfg(unix)]
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().expect("not committed");
        let n = file.write(buf)?;
        self.unflushed += n;
        if self.unflushed >= WRITEBACK {
            self.unflushed = 0;
            file.flush()?;
            start_writeback(file.get_ref().as_file());
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

/// Asks the kernel to start writing the file's dirty pages now, without
/// waiting for them; only a hint, so errors are ignored (the final sync
/// reports any).
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: a valid open descriptor; offset 0 and length 0 mean the
        // whole file; SYNC_FILE_RANGE_WRITE only starts write-out.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_file_appears_only_on_commit_and_cleans_up_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub").join("r.csv");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"a,b\n").unwrap();
        let tmp = f.temp_path().to_owned();
        assert!(tmp.exists() && !dest.exists());
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".r.csv.") && name.ends_with(".tmp"),
            "{name}"
        );
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"a,b\n");
        assert!(!tmp.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dest), 0o600);
            assert_eq!(mode(dest.parent().unwrap()), 0o700);
        }

        let f = AtomicFile::create(&dest).unwrap();
        let tmp = f.temp_path().to_owned();
        drop(f);
        assert!(!tmp.exists(), "an abandoned report leaves no temp file");
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"a,b\n",
            "the old report stays"
        );
    }
}
