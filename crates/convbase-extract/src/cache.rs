//! The feature cache: what earlier runs computed, and the journal of the current run.
//!
//! Rows are keyed by (image content hash, view), never by path, so a renamed image is not
//! recomputed and an edited image is. Rows are only ever reused from files whose provenance
//! is compatible with the current settings, so two settings never mix in one file.
//!
//! A run journals its work as numbered chunk files in a work directory beside the output
//! (`.NAME.work/chunk-NNNNNN.parquet`), each written atomically. A run killed at any moment
//! leaves complete chunks behind; the next run takes them as cached rows and continues.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use convbase_format::{FeatureBatch, FeatureProvenance, Features, FeaturesWriter};

/// Cached feature vectors by (image sha256, view).
#[derive(Debug, Default)]
pub struct Pool {
    rows: HashMap<(String, u32), Vec<f32>>,
}

impl Pool {
    pub fn get(&self, sha256: &str, view: u32) -> Option<&[f32]> {
        self.rows
            .get(&(sha256.to_string(), view))
            .map(Vec::as_slice)
    }

    pub fn contains(&self, sha256: &str, view: u32) -> bool {
        self.rows.contains_key(&(sha256.to_string(), view))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds every row of `batch`.
    pub fn add(&mut self, batch: &FeatureBatch, dim: usize) {
        for i in 0..batch.len() {
            self.rows
                .entry((batch.sha256[i].clone(), batch.views[i]))
                .or_insert_with(|| batch.row(i, dim).to_vec());
        }
    }

    /// Adds the rows of a features file if it was computed with compatible settings.
    /// Returns why it was not used, if it was not.
    pub fn add_file(&mut self, path: &Path, want: &FeatureProvenance) -> Result<(), String> {
        let features = Features::read(path).map_err(|e| e.to_string())?;
        compatible(&features.provenance, want)?;
        self.add(&features.rows, features.dim);
        Ok(())
    }
}

/// Whether rows computed under `have` may be reused under `want`.
pub fn compatible(have: &FeatureProvenance, want: &FeatureProvenance) -> Result<(), String> {
    want.check_compatible(have)?;
    if have.augment != want.augment {
        return Err(format!(
            "augment differs: {:?} vs {:?}",
            want.augment, have.augment
        ));
    }
    Ok(())
}

/// The journal of completed chunks of the current run, beside the output file.
#[derive(Debug)]
pub struct WorkDir {
    dir: PathBuf,
    next: usize,
}

impl WorkDir {
    /// The work directory for `out`: `.NAME.work` in the same directory.
    pub fn path_for(out: &Path) -> PathBuf {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.with_file_name(format!(".{name}.work"))
    }

    /// Opens the journal, feeding compatible chunks into `pool` and deleting the others.
    pub fn open(out: &Path, want: &FeatureProvenance, pool: &mut Pool) -> anyhow::Result<Self> {
        let dir = Self::path_for(out);
        let mut next = 0;
        if dir.is_dir() {
            let mut chunks: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            chunks.sort();
            for chunk in chunks {
                let name = chunk.file_name().unwrap_or_default().to_string_lossy();
                let index = name
                    .strip_prefix("chunk-")
                    .and_then(|s| s.strip_suffix(".parquet"))
                    .and_then(|s| s.parse::<usize>().ok());
                match index {
                    Some(i) => match pool.add_file(&chunk, want) {
                        Ok(()) => {
                            tracing::debug!("resuming from {}", chunk.display());
                            next = next.max(i + 1);
                        }
                        Err(why) => {
                            tracing::info!("discarding {}: {why}", chunk.display());
                            remove(&chunk)?;
                        }
                    },
                    // Temporary files of a killed chunk write, or anything else: not ours to keep.
                    None => remove(&chunk)?,
                }
            }
        }
        Ok(WorkDir { dir, next })
    }

    /// Writes one completed chunk atomically.
    pub fn write_chunk(
        &mut self,
        provenance: &FeatureProvenance,
        batch: &FeatureBatch,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join(format!("chunk-{:06}.parquet", self.next));
        let mut writer = FeaturesWriter::create(&path, provenance)?;
        writer.write(batch)?;
        writer.finish()?;
        self.next += 1;
        Ok(())
    }

    /// Removes the journal once its rows are in the final output.
    pub fn remove(self) -> anyhow::Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }
}

fn remove(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
    .with_context(|| format!("removing {}", path.display()))
}
