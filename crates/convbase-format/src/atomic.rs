use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{FormatError, Result};

/// A file being written next to its final path, renamed over it only by [`AtomicFile::commit`].
///
/// A run that fails, panics or is killed leaves at most a hidden temporary file
/// (`.NAME.tmp.PID`) beside the destination, never a half-written file at the final path.
/// Dropping without committing removes the temporary file.
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
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| FormatError::io(&tmp, e))?;
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
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| FormatError::io(&self.dest, e))?;
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
