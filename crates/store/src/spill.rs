//! The spill: where a paid answer goes when the database cannot take it.
//!
//! Rule this module keeps: no paid answer is lost to a full disk. Before a
//! paid call, room for its answer is reserved in a file beside the database
//! (`<db>-spill/<id>.reserve`, blocks allocated, mode 0600); if the answer's
//! commit then fails, the answer's sealed end (lookup row, audit entry and
//! what becomes of the queue item) is written into that room, sealed once
//! more as a whole, fsynced, and renamed to `<id>.spill`. Writing into
//! allocated blocks needs no new space, so the spill works on a full disk.
//! The next `Store::open` commits every spill file and removes it; nothing
//! in a spill file is plaintext (docs/FORMAT.md, "Spill files"). Tests in
//! tests/cli: `billing::a_paid_answer_the_full_database_cannot_take_is_kept_and_stored_later`,
//! and, when no room can be reserved, no call is made
//! (`billing::with_no_room_to_keep_the_answer_no_call_is_made`).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::queue::SealedFinish;
use super::{Store, StoreError, sqlite};
use crate::crypto;
use gbdfl_core::fsutil;

/// First bytes of a spill file.
const MAGIC: &[u8; 8] = b"GBDFLSP1";

/// Room reserved beyond the answer's own size: the sealed row's other
/// columns, the audit entry, and the JSON around them.
const OVERHEAD: u64 = 64 * 1024;

/// Room reserved for one answer of at most `max_body` bytes: the sealed
/// body as JSON numbers takes at most 4 bytes per byte.
pub fn reserve_size(max_body: u64) -> u64 {
    max_body.saturating_mul(4).saturating_add(OVERHEAD)
}

/// Room reserved for one paid call's answer, reusable for the next call
/// until a spill uses it. Dropped unused, it is removed.
#[derive(Debug)]
pub struct Reservation {
    path: PathBuf,
    file: Option<fs::File>,
    id: String,
}

impl Reservation {
    /// Whether the room is still free (no spill has used it).
    pub fn is_free(&self) -> bool {
        self.file.is_some()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The folder of spill files of the database at `db`.
pub fn spill_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-spill");
    db.with_file_name(name)
}

fn aad(id: &str, key_version: u32) -> Vec<u8> {
    crypto::associated_data("spill", "file", id, key_version)
}

/// Allocates `len` bytes of real blocks for `file` (not a sparse length),
/// so that writing them later needs no new space.
fn allocate(file: &fs::File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "reservation too large"))?;
        // SAFETY: a valid open descriptor and plain integers.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Elsewhere: write the zeros.
        let mut w = io::BufWriter::new(file);
        io::copy(&mut io::repeat(0).take(len), &mut w)?;
        w.flush()
    }
}

impl Store {
    /// Reserves room for the answer of one paid call of at most `max_body`
    /// bytes; an error means the answer could not be kept, so no call
    /// should be made.
    pub fn reserve_spill(&self, max_body: u64) -> Result<Reservation, StoreError> {
        let dir = spill_dir(&self.path);
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        let path = dir.join(format!("{id}.reserve"));
        let reserve = || -> io::Result<fs::File> {
            fsutil::create_private_dir(&dir)?;
            let file = fsutil::create_private_file(&path)?;
            if let Err(e) = allocate(&file, reserve_size(max_body)) {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
            Ok(file)
        };
        match reserve() {
            Ok(file) => Ok(Reservation {
                path,
                file: Some(file),
                id,
            }),
            Err(e) => Err(StoreError::NoRoom {
                dir,
                bytes: reserve_size(max_body),
                source: e,
            }),
        }
    }

    /// Keeps `finish`, whose commit failed, in its reserved room: sealed,
    /// fsynced, renamed to `.spill`. Returns the spill file's path; the room
    /// is used up.
    pub fn spill(
        &self,
        room: &mut Reservation,
        finish: &SealedFinish,
    ) -> Result<PathBuf, StoreError> {
        let json = serde_json::to_vec(finish).map_err(io::Error::other)?;
        let sealed = self
            .keys
            .seal(&json, &aad(&room.id, self.key_version))
            .map_err(|e| StoreError::Io(io::Error::other(e.to_string())))?;
        let Some(mut file) = room.file.take() else {
            return Err(StoreError::Io(io::Error::other("spill room already used")));
        };
        let done = room.path.with_extension("spill");
        match write_spill(&mut file, self.key_version, &sealed, &room.path, &done) {
            Ok(()) => Ok(done),
            Err(e) => {
                // Put the room back so that its Drop removes it.
                room.file = Some(file);
                Err(StoreError::Io(e))
            }
        }
    }

    /// How many spill files wait to be stored.
    pub fn pending_spills(&self) -> usize {
        fs::read_dir(spill_dir(&self.path))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "spill"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Commits every spill file of this database and removes it; removes
    /// reservations left by processes that ended. Returns how many answers
    /// were taken in. A spill file that cannot be opened is left in place
    /// and named in the error.
    pub fn take_in_spills(&self) -> Result<usize, StoreError> {
        let dir = spill_dir(&self.path);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::Io(e)),
        };
        let mut taken = 0;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            match path.extension().and_then(|e| e.to_str()) {
                Some("spill") => {
                    // Another gbdfl process may take the same file in at
                    // the same time: one stores it, the other finds it gone
                    // or already stored.
                    match self.take_in(&path) {
                        Ok(()) => {}
                        Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                    match fs::remove_file(&path) {
                        Ok(()) => taken += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StoreError::Io(e)),
                    }
                }
                // A reservation of a live process is its own; one of a
                // process that ended is only room, and goes. Its name is a
                // UUIDv7, whose time says how old it is.
                Some("reserve") if reservation_is_stale(&path) => {
                    let _ = fs::remove_file(&path);
                }
                _ => {}
            }
        }
        Ok(taken)
    }

    fn take_in(&self, path: &Path) -> Result<(), StoreError> {
        let bad = |why: &str| StoreError::Corrupt {
            id: path.display().to_string(),
            column: "spill",
            reason: why.to_owned(),
        };
        let bytes = fs::read(path)?;
        if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad("not a gbdfl spill file"));
        }
        let version = u32::from_le_bytes(
            bytes[MAGIC.len()..MAGIC.len() + 4]
                .try_into()
                .map_err(|_| bad("short"))?,
        );
        if version != self.key_version {
            return Err(bad(&format!(
                "sealed under key version {version}, this database's key is version {}: open it with the key file of that version",
                self.key_version
            )));
        }
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| bad("name"))?;
        let json = self
            .keys
            .open(&bytes[MAGIC.len() + 4..], &aad(id, version))
            .map_err(|_| bad("does not open under this database's key (changed or damaged)"))?;
        let mut finish: SealedFinish =
            serde_json::from_slice(&json).map_err(|e| bad(&e.to_string()))?;
        finish.up_to_date(self)?;
        sqlite::immediate(&self.conn, |c| self.take_in_finish(c, &finish))
    }
}

/// Writes a spill into its reserved room from the start, fsyncs it, and
/// renames it from `room` to `done` (the folder fsynced too).
fn write_spill(
    file: &mut fs::File,
    key_version: u32,
    sealed: &[u8],
    room: &Path,
    done: &Path,
) -> io::Result<()> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0))?;
    file.write_all(MAGIC)?;
    file.write_all(&key_version.to_le_bytes())?;
    file.write_all(sealed)?;
    let len = (MAGIC.len() + 4 + sealed.len()) as u64;
    file.set_len(len)?;
    file.sync_all()?;
    fs::rename(room, done)?;
    if let Some(dir) = done.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Whether a reservation file is older than any call can last (an hour):
/// its process ended without removing it.
fn reservation_is_stale(path: &Path) -> bool {
    let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
        return false;
    };
    let Ok(u) = uuid::Uuid::parse_str(id) else {
        return false;
    };
    let Some(ts) = u.get_timestamp() else {
        return false;
    };
    let (secs, _) = ts.to_unix();
    // Compared with the UUIDv7's own time, which the system clock gave: an
    // age between processes, not a time any test sets.
    let now = chrono::Utc::now().timestamp();
    u64::try_from(now)
        .ok()
        .and_then(|n| n.checked_sub(secs))
        .is_some_and(|age| age > 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_covers_the_largest_answer_and_never_overflows() {
        assert_eq!(reserve_size(16_384), 4 * 16_384 + OVERHEAD);
        assert_eq!(reserve_size(u64::MAX), u64::MAX);
    }

    #[test]
    fn only_old_reservations_are_stale() {
        let fresh = format!("/x/{}.reserve", uuid::Uuid::now_v7());
        assert!(!reservation_is_stale(Path::new(&fresh)));
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_000_000_000, 0);
        let old = format!("/x/{}.reserve", uuid::Uuid::new_v7(ts));
        assert!(reservation_is_stale(Path::new(&old)));
        assert!(!reservation_is_stale(Path::new("/x/not-a-uuid.reserve")));
    }

    #[test]
    fn the_spill_folder_sits_beside_the_database() {
        assert_eq!(
            spill_dir(Path::new("/data/gbdfl.db")),
            PathBuf::from("/data/gbdfl.db-spill")
        );
    }
}
