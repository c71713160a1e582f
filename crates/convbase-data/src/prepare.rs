//! Scanning a data set into a manifest: layout, classes, splits, and one row per file.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use convbase_format::{Manifest, ManifestMeta, ManifestRow, STATUS_OK, Split};
use indicatif::ProgressBar;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::decode::{BadImage, decode};
use crate::split::SplitSpec;

/// File name extensions of the formats convbase reads; a directory with one of these is
/// reported rather than searched, as it is almost certainly a mistake.
const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

/// How the data set is laid out and how splits are assigned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layout {
    /// `ROOT/{train,validation,test}/CLASS/*` (`val` for `validation`; `test` optional).
    PreSplit,
    /// `ROOT/CLASS/*`, split by [`SplitSpec::assign`] with this seed.
    Flat { spec: SplitSpec, seed: u64 },
}

impl Layout {
    /// The footer's `convbase.layout` value.
    pub fn describe(&self) -> String {
        match self {
            Layout::PreSplit => "presplit".into(),
            Layout::Flat { spec, seed } => format!("split {spec} seed {seed}"),
        }
    }
}

/// Why a data set cannot be prepared at all (as opposed to a bad file, which is a row).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The layout is not one convbase understands, or a split lacks a class.
    #[error("{}: {problem}", root.display())]
    Layout { root: PathBuf, problem: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PrepareError + '_ {
    move |source| PrepareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A path found under a class folder, before it is read.
#[derive(Debug)]
struct Entry {
    abs: PathBuf,
    rel: String,
    class: String,
    split: Split,
    /// Set when the entry is known to be unusable without reading it.
    bad: Option<String>,
}

/// The result of [`prepare`]: the manifest to write and what to tell the user.
#[derive(Debug)]
pub struct Prepared {
    pub manifest: Manifest,
    /// Files directly at the root or in a split folder, outside any class: not in the
    /// manifest (they have no class), only reported.
    pub ignored: Vec<String>,
}

impl Prepared {
    /// Rows whose status is not `ok`.
    pub fn bad_rows(&self) -> impl Iterator<Item = &ManifestRow> {
        self.manifest.rows.iter().filter(|r| !r.is_ok())
    }

    /// Usable images per (split, class).
    pub fn ok_counts(&self) -> BTreeMap<(Split, String), usize> {
        let mut counts = BTreeMap::new();
        for r in self.manifest.rows.iter().filter(|r| r.is_ok()) {
            *counts.entry((r.split, r.class.clone())).or_insert(0) += 1;
        }
        counts
    }
}

/// Scans `root`, decodes every file in parallel (rayon's global pool), and builds the
/// manifest with rows sorted by path. `split` is required for a flat layout and refused
/// for a pre-split one. `progress` is advanced once per file.
pub fn prepare(
    root: &Path,
    split: Option<SplitSpec>,
    seed: u64,
    progress: &ProgressBar,
) -> Result<Prepared, PrepareError> {
    let root = fs::canonicalize(root).map_err(io_err(root))?;
    if !root.is_dir() {
        return Err(layout_err(&root, "not a directory".into()));
    }
    let mut ignored = Vec::new();
    let top = list_dirs(&root, "", &mut ignored)?;
    let split_dirs: Vec<(Split, String)> = top
        .iter()
        .filter_map(|name| name.parse::<Split>().ok().map(|s| (s, name.clone())))
        .collect();
    let layout = match (split_dirs.is_empty(), split) {
        (false, Some(_)) => {
            return Err(layout_err(
                &root,
                "already split into train/validation/test folders; drop --split".into(),
            ));
        }
        (false, None) => Layout::PreSplit,
        (true, Some(spec)) => Layout::Flat { spec, seed },
        (true, None) => {
            return Err(layout_err(
                &root,
                "no train/validation/test folders: for a flat ROOT/CLASS/* layout pass --split \
                 (e.g. --split train=0.7,validation=0.15,test=0.15)"
                    .into(),
            ));
        }
    };

    let mut entries = Vec::new();
    let (classes, active) = match layout {
        Layout::PreSplit => {
            let mut by_split = BTreeMap::new();
            for name in &top {
                let Some(&(s, _)) = split_dirs.iter().find(|(_, n)| n == name) else {
                    return Err(layout_err(
                        &root,
                        format!("unexpected folder `{name}` beside the split folders"),
                    ));
                };
                if by_split.insert(s, name.clone()).is_some() {
                    return Err(layout_err(
                        &root,
                        "both `val` and `validation` folders exist".into(),
                    ));
                }
            }
            for needed in [Split::Train, Split::Validation] {
                if !by_split.contains_key(&needed) {
                    return Err(layout_err(&root, format!("no `{needed}` folder")));
                }
            }
            let mut per_split = Vec::new();
            let mut all = BTreeSet::new();
            for (&s, name) in &by_split {
                let classes = list_dirs(&root.join(name), name, &mut ignored)?;
                all.extend(classes.iter().cloned());
                per_split.push((s, name.clone(), classes));
            }
            for (s, name, classes) in &per_split {
                if let Some(missing) = all.iter().find(|c| !classes.contains(c)) {
                    return Err(layout_err(
                        &root,
                        format!("split `{s}` has no folder for class `{missing}`"),
                    ));
                }
                for class in classes {
                    let rel = format!("{name}/{class}");
                    walk(&root, &rel, class, Some(*s), &mut entries)?;
                }
            }
            (
                all.into_iter().collect::<Vec<_>>(),
                by_split.into_keys().collect::<Vec<_>>(),
            )
        }
        Layout::Flat { spec, .. } => {
            for class in &top {
                walk(&root, class, class, None, &mut entries)?;
            }
            (top.clone(), spec.active())
        }
    };
    if classes.len() < 2 {
        return Err(layout_err(
            &root,
            format!(
                "found {} class folder(s) ({}); at least 2 are needed",
                classes.len(),
                classes.join(", ")
            ),
        ));
    }
    if let Layout::Flat { spec, seed } = layout {
        for e in &mut entries {
            e.split = spec.assign(seed, e.rel.as_bytes());
        }
    }

    progress.set_length(entries.len() as u64);
    let mut rows: Vec<ManifestRow> = entries
        .par_iter()
        .map(|e| {
            let row = examine(e, &classes);
            progress.inc(1);
            row
        })
        .collect();
    progress.finish_and_clear();
    rows.sort_by(|a, b| a.path.cmp(&b.path));

    let prepared = Prepared {
        manifest: Manifest {
            meta: ManifestMeta {
                classes: classes.clone(),
                root: root.to_string_lossy().into_owned(),
                layout: layout.describe(),
            },
            rows,
        },
        ignored,
    };
    let counts = prepared.ok_counts();
    for s in active {
        for c in &classes {
            if !counts.contains_key(&(s, c.clone())) {
                return Err(layout_err(
                    &root,
                    format!("split `{s}` has no usable image of class `{c}`"),
                ));
            }
        }
    }
    Ok(prepared)
}

fn layout_err(root: &Path, problem: String) -> PrepareError {
    PrepareError::Layout {
        root: root.to_path_buf(),
        problem,
    }
}

/// Sub-folder names of `dir`, sorted; files and hidden folders go to `ignored`.
fn list_dirs(
    dir: &Path,
    rel: &str,
    ignored: &mut Vec<String>,
) -> Result<Vec<String>, PrepareError> {
    let mut names = Vec::new();
    for item in fs::read_dir(dir).map_err(io_err(dir))? {
        let item = item.map_err(io_err(dir))?;
        let name = item.file_name();
        let shown = join_rel(rel, &name.to_string_lossy());
        let is_dir = fs::metadata(item.path()).is_ok_and(|m| m.is_dir());
        match name.to_str() {
            Some(n) if is_dir && !n.starts_with('.') => names.push(n.to_string()),
            None if is_dir => {
                return Err(layout_err(
                    dir,
                    format!("folder name `{shown}` is not valid UTF-8; rename it"),
                ));
            }
            _ => ignored.push(shown),
        }
    }
    names.sort();
    Ok(names)
}

fn join_rel(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

fn has_image_extension(name: &OsStr) -> bool {
    Path::new(name)
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Collects every entry under `root/rel` (recursively) as belonging to `class`.
fn walk(
    root: &Path,
    rel: &str,
    class: &str,
    split: Option<Split>,
    out: &mut Vec<Entry>,
) -> Result<(), PrepareError> {
    let dir = root.join(rel);
    let listing = match fs::read_dir(&dir) {
        Ok(l) => l,
        // The class folder itself must be readable; deeper ones become a bad row.
        Err(e) if rel.matches('/').count() > usize::from(split.is_some()) => {
            out.push(entry(
                &dir,
                rel,
                class,
                split,
                Some(format!("unreadable folder: {e}")),
            ));
            return Ok(());
        }
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut items: Vec<_> = listing
        .map(|i| i.map(|i| i.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(&dir))?;
    items.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in items {
        let child_rel = join_rel(rel, &name.to_string_lossy());
        let abs = dir.join(&name);
        let utf8 = name.to_str().is_some();
        let link = fs::symlink_metadata(&abs).map_err(io_err(&abs))?;
        let target = fs::metadata(&abs);
        let bad = match &target {
            Err(_) if link.file_type().is_symlink() => Some("broken symlink".to_string()),
            Err(e) => Some(format!("unreadable: {e}")),
            Ok(m) if m.is_dir() => {
                if link.file_type().is_symlink() {
                    Some("symlink to a folder (not followed)".into())
                } else if has_image_extension(&name) {
                    Some("a folder, not a file (named like an image)".into())
                } else if utf8 {
                    walk(root, &child_rel, class, split, out)?;
                    continue;
                } else {
                    Some("folder name is not valid UTF-8".into())
                }
            }
            Ok(m) if !m.is_file() => Some("not a regular file".into()),
            Ok(_) if !utf8 => Some("file name is not valid UTF-8".into()),
            Ok(_) => None,
        };
        out.push(entry(&abs, &child_rel, class, split, bad));
    }
    Ok(())
}

fn entry(abs: &Path, rel: &str, class: &str, split: Option<Split>, bad: Option<String>) -> Entry {
    Entry {
        abs: abs.to_path_buf(),
        rel: rel.to_string(),
        class: class.to_string(),
        // Flat layouts get their split assigned once all entries are known.
        split: split.unwrap_or(Split::Train),
        bad,
    }
}

/// Reads, hashes and decodes one entry into its manifest row.
fn examine(e: &Entry, classes: &[String]) -> ManifestRow {
    let label = classes
        .iter()
        .position(|c| *c == e.class)
        .expect("entry class is in the class list") as i32;
    let mut row = ManifestRow {
        path: e.rel.clone(),
        class: e.class.clone(),
        label,
        split: e.split,
        sha256: None,
        bytes: None,
        width: None,
        height: None,
        color: None,
        status: String::new(),
    };
    let bytes = match &e.bad {
        Some(reason) => {
            row.status = reason.clone();
            return row;
        }
        None => match fs::read(&e.abs) {
            Ok(b) => b,
            Err(err) => {
                row.bytes = fs::metadata(&e.abs).ok().map(|m| m.len());
                row.status = BadImage::Unreadable(err).to_string();
                return row;
            }
        },
    };
    row.sha256 = Some(hex::encode(Sha256::digest(&bytes)));
    row.bytes = Some(bytes.len() as u64);
    match decode(&bytes) {
        Ok(d) => {
            row.width = Some(d.image.width());
            row.height = Some(d.image.height());
            row.color = Some(d.color);
            row.status = STATUS_OK.into();
        }
        Err(reason) => row.status = reason.to_string(),
    }
    row
}
