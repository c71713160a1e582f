use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{FormatError, Result};

/// A file being written next to its final path, renamed over it only by [`AtomicFile::commit`].
///
/// A run that fails, panics or is killed leaves at most a hidden temporary file
/// (`.NAME.tmp.PID`) beside the destination, never a half-written file at the final path.
/// Dropping without committing removes the temporary file; one left by a killed writer is
/// removed by the next [`AtomicFile::create`] for the same destination. The writer holds an
/// exclusive lock on its temporary file for its whole life, so an unlocked one belongs to
/// a writer that is gone.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file beside `dest` (same directory, so the rename is atomic).
    pub fn create(dest: impl AsRef<Path>) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        let name = dest
            .file_name()
            .ok_or_else(|| FormatError::Invalid {
                path: dest.clone(),
                problem: "output path has no file name".into(),
            })?
            .to_string_lossy()
            .into_owned();
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| FormatError::io(&dir, e))?;
        remove_abandoned(&dir, &name);
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let file = create_locked(&tmp)?;
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            dest,
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file present until commit")
    }

    /// A second handle on the temporary file (for writers that take ownership).
    pub fn try_clone(&self) -> Result<File> {
        self.file
            .as_ref()
            .expect("file present until commit")
            .try_clone()
            .map_err(|e| FormatError::io(&self.tmp, e))
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes, syncs and renames the temporary file to the final path.
    pub fn commit(mut self) -> Result<()> {
        let mut file = self.file.take().expect("commit once");
        file.flush().map_err(|e| FormatError::io(&self.tmp, e))?;
        file.sync_all().map_err(|e| FormatError::io(&self.tmp, e))?;
        // Renamed while still open (and locked), so no cleanup can take it first.
        let renamed = std::fs::rename(&self.tmp, &self.dest);
        drop(file);
        if renamed.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        renamed.map_err(|e| FormatError::io(&self.dest, e))?;
        if let Some(dir) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename itself durable; not all platforms allow opening a directory.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Opens `tmp` under an exclusive lock, held until the file is renamed or removed, and
/// empties it. Opened without truncating, so that a file another writer holds is never
/// touched. Between the create and the lock, another writer of the same destination
/// could take the file for abandoned and remove it; it is then created again. A file
/// system without locks fails the lock here and in `remove_abandoned` alike, which then
/// removes nothing.
fn create_locked(tmp: &Path) -> Result<File> {
    // A cleaner holds a lock for an instant; a writer in this same process (same PID,
    // same temporary name) holds it for its whole write.
    for _ in 0..500 {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(tmp)
            .map_err(|e| FormatError::io(tmp, e))?;
        match file.try_lock() {
            Ok(()) if !still_named(tmp, &file) => continue,
            Ok(()) | Err(std::fs::TryLockError::Error(_)) => {
                file.set_len(0).map_err(|e| FormatError::io(tmp, e))?;
                return Ok(file);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
    Err(FormatError::Invalid {
        path: tmp.to_path_buf(),
        problem: "is being written by another writer of the same file in this process".into(),
    })
}

/// Whether `path` still names the open `file`.
#[cfg(unix)]
fn still_named(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn still_named(_: &Path, _: &File) -> bool {
    true // open files cannot be removed on these platforms
}

/// Removes the temporary files (`.NAME.tmp.PID`) of writers of `dir/NAME` that were killed
/// before they could clean up: those nobody holds a lock on. Best effort; errors are ignored.
fn remove_abandoned(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let is_temp = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if !is_temp {
            continue;
        }
        let path = entry.path();
        if let Ok(f) = File::open(&path)
            && f.try_lock().is_ok()
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Writes `dest` atomically: `write` fills a temporary file that replaces `dest` only if it
/// returns `Ok`.
pub fn write_atomically<E>(
    dest: impl AsRef<Path>,
    write: impl FnOnce(&mut File) -> std::result::Result<(), E>,
) -> std::result::Result<(), E>
where
    E: From<FormatError>,
{
    let mut out = AtomicFile::create(dest)?;
    write(out.file())?;
    out.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn failure_mid_write_leaves_nothing_at_final_path() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let res: Result<(), FormatError> = write_atomically(&dest, |f| {
            f.write_all(b"half of it").unwrap();
            Err(FormatError::Invalid {
                path: dest.clone(),
                problem: "boom".into(),
            })
        });
        assert!(res.is_err());
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp file cleaned up"
        );
    }

    #[test]
    fn temporary_files_of_killed_writers_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        // A killed writer's file: nobody holds its lock.
        let dead = dir.path().join(".out.bin.tmp.4000001");
        std::fs::write(&dead, b"half").unwrap();
        // A live writer's file (another process): locked.
        let live = dir.path().join(".out.bin.tmp.4000002");
        let held = File::create(&live).unwrap();
        held.lock().unwrap();
        // Not ours: other names are left alone.
        let other = dir.path().join(".other.bin.tmp.4000003");
        std::fs::write(&other, b"x").unwrap();

        let mut f = AtomicFile::create(&dest).unwrap();
        assert!(!dead.exists(), "abandoned temporary file removed");
        assert!(live.exists(), "a live writer's file is kept");
        assert!(other.exists());
        f.file().write_all(b"new").unwrap();
        f.commit().unwrap();
        drop(held);
        AtomicFile::create(&dest).unwrap();
        assert!(!live.exists(), "removed once its writer is gone");
    }

    #[test]
    fn a_second_writer_in_the_same_process_is_refused_not_mixed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let mut first = AtomicFile::create(&dest).unwrap();
        first.file().write_all(b"first").unwrap();
        let err = AtomicFile::create(&dest).unwrap_err().to_string();
        assert!(err.contains("another writer"), "{err}");
        first.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"first");
    }

    #[test]
    fn commit_replaces_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.txt");
        std::fs::write(&dest, "old").unwrap();
        let mut f = AtomicFile::create(&dest).unwrap();
        f.file().write_all(b"new").unwrap();
        assert_eq!(
            std::fs::read_to_string(&dest).unwrap(),
            "old",
            "not visible before commit"
        );
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
    }
}
