//! The feature cache: what earlier runs computed, and the journal of the current run.
//!
//! Rows are keyed by (image content hash, view), never by path, so a renamed image is not
//! recomputed and an edited image is. Rows are only ever reused from files whose provenance
//! is compatible with the current settings, so two settings never mix in one file.
//!
//! A run journals its work as numbered chunk files in a work directory beside the output
//! (`.NAME.work/chunk-NNNNNN.parquet`), each written atomically. A run killed at any moment
//! leaves complete chunks behind; the next run takes them as cached rows and continues.
//! The cache holds only keys and locations; vectors stay on disk until assembly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use convbase_format::{
    FeatureBatch, FeatureProvenance, FeaturesFile, FeaturesWriter, ManifestRow, Split,
};

/// Rows per row group of the assembled output.
const OUTPUT_ROWS_PER_GROUP: usize = 1024;

/// An index of cached feature rows by (image sha256, view): which file, row group and row
/// holds each. Only keys live in memory; vectors are read back one row group at a time
/// when the output is assembled, so memory stays bounded whatever the data set size.
#[derive(Debug, Default)]
pub struct Cache {
    files: Vec<FeaturesFile>,
    rows: HashMap<(String, u32), Location>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Location {
    file: usize,
    row_group: usize,
    row: usize,
}

impl Cache {
    pub fn contains(&self, sha256: &str, view: u32) -> bool {
        self.rows.contains_key(&(sha256.to_string(), view))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Indexes the rows of a features file if it was computed with compatible settings (an
    /// earlier row for the same key wins). Augmented views are only taken from a file with
    /// the same augmentation policy; view 0 is the plain image under any policy. Returns why
    /// the file was not used, if it was not.
    pub fn add_file(&mut self, path: &Path, want: &FeatureProvenance) -> Result<(), String> {
        let file = FeaturesFile::open(path).map_err(|e| e.to_string())?;
        compatible(&file.provenance, want)?;
        let same_views = file.provenance.augment == want.augment;
        let index = self.files.len();
        for row_group in 0..file.num_row_groups() {
            let keys = file.keys(row_group).map_err(|e| e.to_string())?;
            for (row, key) in keys.into_iter().enumerate() {
                if key.1 != 0 && !same_views {
                    continue;
                }
                self.rows.entry(key).or_insert(Location {
                    file: index,
                    row_group,
                    row,
                });
            }
        }
        self.files.push(file);
        Ok(())
    }

    /// How many rows [`Cache::write_in_order`] would write for `rows`.
    pub fn rows_present<V>(&self, rows: &[&ManifestRow], views_of: impl Fn(Split) -> V) -> usize
    where
        V: IntoIterator<Item = u32>,
    {
        rows.iter()
            .map(|r| {
                let sha = r.sha256.as_deref().unwrap_or_default();
                views_of(r.split)
                    .into_iter()
                    .filter(|&v| self.contains(sha, v))
                    .count()
            })
            .sum()
    }

    /// Writes the rows of `rows`, in that order, each with the views `views_of` its split
    /// (view order within an image); views the cache lacks (images that failed to decode)
    /// are left out.
    ///
    /// Works one output row group at a time, reading each source row group it needs once
    /// per output group; the usual source (the previous output or the journal) is already
    /// in manifest order, so each source row group is read about once.
    pub fn write_in_order<V>(
        &self,
        rows: &[&ManifestRow],
        views_of: impl Fn(Split) -> V,
        writer: &mut FeaturesWriter,
        dim: usize,
    ) -> anyhow::Result<()>
    where
        V: IntoIterator<Item = u32>,
    {
        let items: Vec<(&ManifestRow, u32)> = rows
            .iter()
            .flat_map(|&r| views_of(r.split).into_iter().map(move |v| (r, v)))
            .collect();
        self.write_in_groups(&items, writer, dim, OUTPUT_ROWS_PER_GROUP)
    }

    fn write_in_groups(
        &self,
        items: &[(&ManifestRow, u32)],
        writer: &mut FeaturesWriter,
        dim: usize,
        rows_per_group: usize,
    ) -> anyhow::Result<()> {
        let mut loaded: Option<(Location, FeatureBatch)> = None;
        for window in items.chunks(rows_per_group) {
            let mut batch = FeatureBatch::default();
            let mut locations = Vec::with_capacity(window.len());
            for &(row, view) in window {
                let sha = row.sha256.as_deref().unwrap_or_default();
                let Some(&at) = self.rows.get(&(sha.to_string(), view)) else {
                    continue;
                };
                batch.paths.push(row.path.clone());
                batch.sha256.push(sha.to_string());
                batch.labels.push(row.label);
                batch.splits.push(row.split);
                batch.views.push(view);
                locations.push(at);
            }
            batch.values = vec![0.0; locations.len() * dim];
            let mut order: Vec<usize> = (0..locations.len()).collect();
            order.sort_by_key(|&i| locations[i]);
            for i in order {
                let at = locations[i];
                let group = (at.file, at.row_group);
                let stale = loaded
                    .as_ref()
                    .is_none_or(|(l, _)| (l.file, l.row_group) != group);
                if stale {
                    let file = &self.files[at.file];
                    let rows = file.row_group(at.row_group).with_context(|| {
                        format!("reading cached rows of {}", file.path().display())
                    })?;
                    loaded = Some((at, rows));
                }
                let (_, source) = loaded.as_ref().expect("loaded above");
                batch.values[i * dim..(i + 1) * dim].copy_from_slice(source.row(at.row, dim));
            }
            writer.write(&batch)?;
        }
        Ok(())
    }
}

/// Whether rows computed under `have` may be reused under `want` (augmented views also need
/// the same policy: see [`Cache::add_file`]).
pub fn compatible(have: &FeatureProvenance, want: &FeatureProvenance) -> Result<(), String> {
    want.check_compatible(have)
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
    pub fn open(out: &Path, want: &FeatureProvenance, cache: &mut Cache) -> anyhow::Result<Self> {
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
                    Some(i) => match cache.add_file(&chunk, want) {
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

    /// Writes one completed chunk atomically and indexes it in `cache`.
    pub fn write_chunk(
        &mut self,
        provenance: &FeatureProvenance,
        batch: &FeatureBatch,
        cache: &mut Cache,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join(format!("chunk-{:06}.parquet", self.next));
        let mut writer = FeaturesWriter::create(&path, provenance)?;
        writer.write(batch)?;
        writer.finish()?;
        self.next += 1;
        cache
            .add_file(&path, provenance)
            .map_err(|why| anyhow::anyhow!("re-reading {}: {why}", path.display()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use convbase_format::{Features, Split};

    fn provenance(dim: usize) -> FeatureProvenance {
        FeatureProvenance {
            weights_sha256: "w".into(),
            weights_source: "test".into(),
            layer: "block5_pool".into(),
            input_size: 32,
            resize_filter: "nearest".into(),
            preprocess: "rescale".into(),
            pool: "none".into(),
            feature_shape: vec![1, 1, dim],
            flatten_order: "hwc".into(),
            augment: "none".into(),
            views: 0,
            manifest_sha256: "m".into(),
            classes: vec!["a".into(), "b".into()],
            dataset_root: "/data".into(),
        }
    }

    /// Image `i`: its content hash and a vector that says which image it is.
    fn sha(i: usize) -> String {
        format!("{i:064x}")
    }

    fn vector(i: usize, dim: usize) -> Vec<f32> {
        (0..dim).map(|k| (i * 10 + k) as f32).collect()
    }

    /// A source file holding `images`, `per_group` rows per row group.
    fn source(path: &Path, images: &[usize], per_group: usize, dim: usize) {
        let mut w = FeaturesWriter::create(path, &provenance(dim)).unwrap();
        for group in images.chunks(per_group) {
            let mut b = FeatureBatch::default();
            for &i in group {
                b.paths.push(format!("old/{i}.png"));
                b.sha256.push(sha(i));
                b.labels.push(0);
                b.splits.push(Split::Train);
                b.views.push(0);
                b.values.extend(vector(i, dim));
            }
            w.write(&b).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn assembles_manifest_order_from_scattered_row_groups() {
        let dim = 3;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        source(&a, &[7, 3, 5, 1, 9], 2, dim);
        source(&b, &[2, 8, 3, 6], 3, dim); // 3 is in both: the first file's row wins
        let mut cache = Cache::default();
        cache.add_file(&a, &provenance(dim)).unwrap();
        cache.add_file(&b, &provenance(dim)).unwrap();
        assert_eq!(cache.len(), 8);

        // The manifest: another order, another path per image, and image 4 missing from
        // the cache (it failed to decode), which must simply be left out.
        let manifest: Vec<ManifestRow> = [6, 1, 4, 9, 2, 3, 8, 7, 5]
            .iter()
            .map(|&i| ManifestRow {
                path: format!("new/{i}.png"),
                class: ["a", "b"][i % 2].into(),
                label: (i % 2) as i32,
                split: Split::Validation,
                sha256: Some(sha(i)),
                bytes: Some(1),
                width: Some(28),
                height: Some(28),
                color: Some("L8".into()),
                status: "ok".into(),
            })
            .collect();
        let rows: Vec<(&ManifestRow, u32)> = manifest.iter().map(|r| (r, 0)).collect();
        let out = dir.path().join("out.parquet");
        let mut writer = FeaturesWriter::create(&out, &provenance(dim)).unwrap();
        cache.write_in_groups(&rows, &mut writer, dim, 4).unwrap();
        assert_eq!(writer.finish().unwrap(), 8);

        let file = FeaturesFile::open(&out).unwrap();
        assert_eq!(
            file.num_row_groups(),
            3,
            "groups of at most 4 manifest rows"
        );
        let got = Features::read(&out).unwrap().rows;
        let order = [6, 1, 9, 2, 3, 8, 7, 5];
        assert_eq!(
            got.paths,
            order.map(|i| format!("new/{i}.png")).to_vec(),
            "manifest order and paths"
        );
        assert_eq!(got.labels, order.map(|i| (i % 2) as i32).to_vec());
        for (r, &i) in order.iter().enumerate() {
            assert_eq!(got.row(r, dim), vector(i, dim).as_slice(), "image {i}");
        }
    }
}
