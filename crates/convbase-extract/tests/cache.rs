//! The cache rules of `convbase-extract`, on the real ImageNet weights and small images made
//! here (32 px input keeps each forward pass cheap).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::Device;
use convbase_data::ResizeFilter;
use convbase_extract::{Config, Summary};
use convbase_format::{
    Features, Manifest, ManifestMeta, ManifestRow, STATUS_OK, Split, sha256_file,
};
use convbase_vgg16::{GlobalPool, Layer, Preprocess};

fn weights() -> String {
    let path = std::env::var("CONVBASE_TEST_WEIGHTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../data/weights/vgg16-keras-imagenet.safetensors")
        });
    assert!(
        path.exists(),
        "real weights missing at {}: run scripts/fetch-weights.sh first",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// A data set of `n` small colour images in two classes, and its manifest.
struct Data {
    dir: tempfile::TempDir,
    manifest: Manifest,
}

impl Data {
    fn new(n: usize) -> Data {
        let dir = tempfile::tempdir().unwrap();
        let mut data = Data {
            dir,
            manifest: Manifest {
                meta: ManifestMeta {
                    classes: vec!["a".into(), "b".into()],
                    root: String::new(),
                    layout: "presplit".into(),
                },
                rows: Vec::new(),
            },
        };
        data.manifest.meta.root = data.root().to_string_lossy().into_owned();
        for i in 0..n {
            data.add(i, i as u32);
        }
        data
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    /// Writes image `i` with content seeded by `seed` and (re)records it in the manifest.
    fn add(&mut self, i: usize, seed: u32) {
        let label = (i % 2) as i32;
        let rel = format!("{}/img{i:04}.png", if label == 0 { "a" } else { "b" });
        let path = self.root().join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::RgbImage::from_fn(24, 20, |x, y| {
            let v = seed
                .wrapping_mul(2_654_435_761)
                .wrapping_add(x * 31 + y * 17);
            image::Rgb([(v % 251) as u8, (v / 7 % 241) as u8, (v / 13 % 239) as u8])
        });
        img.save(&path).unwrap();
        self.manifest.rows.retain(|r| r.path != rel);
        self.manifest.rows.push(ManifestRow {
            path: rel,
            class: self.manifest.meta.classes[label as usize].clone(),
            label,
            split: if i.is_multiple_of(5) {
                Split::Validation
            } else {
                Split::Train
            },
            sha256: Some(sha256_file(&path).unwrap()),
            bytes: Some(std::fs::metadata(&path).unwrap().len()),
            width: Some(24),
            height: Some(20),
            color: Some("Rgb8".into()),
            status: STATUS_OK.into(),
        });
        self.manifest.rows.sort_by(|a, b| a.path.cmp(&b.path));
    }

    fn manifest_path(&self) -> PathBuf {
        let p = self.dir.path().join("manifest.parquet");
        self.manifest.write(&p).unwrap();
        p
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("features.parquet")
    }

    fn config(&self) -> Config {
        Config {
            manifest: self.manifest_path(),
            weights: weights(),
            out: self.out(),
            size: 32,
            batch: 4,
            layer: Layer::Block5Pool,
            pool: GlobalPool::None,
            preprocess: None,
            resize_filter: ResizeFilter::Nearest,
            device: Device::Cpu,
            root: None,
            reuse: Vec::new(),
            chunk_batches: 1,
            decode_threads: 1,
            views: 0,
            augment: None,
        }
    }
}

fn run(cfg: &Config) -> Summary {
    convbase_extract::run(cfg, &indicatif::ProgressBar::hidden()).unwrap()
}

#[test]
fn rerun_with_identical_inputs_does_no_model_work() {
    let data = Data::new(10);
    let first = run(&data.config());
    assert_eq!(
        (first.rows, first.computed, first.up_to_date),
        (10, 10, false)
    );
    let bytes = std::fs::read(data.out()).unwrap();
    let second = run(&data.config());
    assert!(second.up_to_date);
    assert_eq!(second.computed, 0);
    assert_eq!(std::fs::read(data.out()).unwrap(), bytes, "file untouched");
}

#[test]
fn only_added_images_are_computed_and_removed_ones_disappear() {
    let mut data = Data::new(8);
    let full = run(&data.config());
    assert_eq!(full.computed, 8);
    let before = Features::read(&data.out()).unwrap();

    data.add(8, 8);
    data.add(9, 9);
    let added = run(&data.config());
    assert_eq!((added.rows, added.computed, added.cached), (10, 2, 8));
    let after = Features::read(&data.out()).unwrap();
    // Cached rows are carried over bit for bit.
    for i in 0..before.rows.len() {
        let j = after
            .rows
            .paths
            .iter()
            .position(|p| *p == before.rows.paths[i])
            .unwrap();
        assert_eq!(before.rows.row(i, before.dim), after.rows.row(j, after.dim));
    }

    let gone = data.manifest.rows.remove(3).path;
    let removed = run(&data.config());
    assert_eq!((removed.rows, removed.computed), (9, 0));
    let last = Features::read(&data.out()).unwrap();
    assert!(!last.rows.paths.contains(&gone));
}

#[test]
fn an_edited_image_is_recomputed() {
    let mut data = Data::new(6);
    run(&data.config());
    data.add(2, 1000); // same path, new content
    let s = run(&data.config());
    assert_eq!((s.rows, s.computed), (6, 1));
}

#[test]
fn any_settings_change_recomputes_everything_into_one_setting() {
    let data = Data::new(6);
    run(&data.config());
    let changes: [fn(&mut Config); 5] = [
        |c| c.size = 40,
        |c| c.layer = Layer::Block4Pool,
        |c| c.pool = GlobalPool::Avg,
        |c| c.preprocess = Some(Preprocess::Rescale),
        |c| c.resize_filter = ResizeFilter::Bilinear,
    ];
    for change in changes {
        let mut cfg = data.config();
        change(&mut cfg);
        let s = run(&cfg);
        assert_eq!((s.rows, s.computed), (6, 6), "{cfg:?}");
        let f = Features::read(&data.out()).unwrap();
        assert_eq!(f.provenance.input_size, cfg.size);
        assert_eq!(f.provenance.layer, cfg.layer.to_string());
        assert_eq!(
            f.rows.values.len(),
            6 * f.dim,
            "one setting, one vector length"
        );
    }
}

/// The vector of (path, view) in a features file.
fn vector(f: &Features, path: &str, view: u32) -> Vec<f32> {
    let i = (0..f.rows.len())
        .find(|&i| f.rows.paths[i] == path && f.rows.views[i] == view)
        .unwrap_or_else(|| panic!("no row for {path} view {view}"));
    f.rows.row(i, f.dim).to_vec()
}

#[test]
fn augmented_views_are_cached_per_view_and_only_for_training_images() {
    let data = Data::new(10); // 8 train, 2 validation
    let with = |views: u32, policy: &str| {
        let mut c = data.config();
        c.views = views;
        c.augment = Some(policy.parse().unwrap());
        c
    };
    let s = run(&with(2, "book"));
    assert_eq!((s.rows, s.computed), (8 * 3 + 2, 26));
    let two = Features::read(&data.out()).unwrap();
    assert_eq!(two.provenance.views, 2);
    assert!(
        two.provenance.augment.contains("rotation"),
        "policy in the footer"
    );
    for i in 0..two.rows.len() {
        let max = if two.rows.splits[i] == Split::Train {
            2
        } else {
            0
        };
        assert!(two.rows.views[i] <= max, "row {i}");
    }
    let train = &data
        .manifest
        .rows
        .iter()
        .find(|r| r.split == Split::Train)
        .unwrap()
        .path;
    assert_ne!(
        vector(&two, train, 0),
        vector(&two, train, 1),
        "a view is augmented"
    );
    assert_ne!(
        vector(&two, train, 1),
        vector(&two, train, 2),
        "views differ"
    );

    // Views are a function of (policy, image, view): a fresh file gets the same ones.
    let mut fresh = with(2, "book");
    fresh.out = data.dir.path().join("fresh.parquet");
    run(&fresh);
    assert_eq!(
        std::fs::read(&fresh.out).unwrap(),
        std::fs::read(data.out()).unwrap()
    );

    // One more view: only it is computed; the others are carried over bit for bit.
    let s = run(&with(3, "book"));
    assert_eq!((s.rows, s.computed), (8 * 4 + 2, 8));
    let three = Features::read(&data.out()).unwrap();
    for view in 0..=2 {
        assert_eq!(vector(&two, train, view), vector(&three, train, view));
    }

    // Another policy: the augmented views are recomputed, the plain views are not.
    let s = run(&with(3, "book,seed=7"));
    assert_eq!((s.rows, s.computed), (8 * 4 + 2, 8 * 3));
    let reseeded = Features::read(&data.out()).unwrap();
    assert_eq!(vector(&three, train, 0), vector(&reseeded, train, 0));
    assert_ne!(vector(&three, train, 1), vector(&reseeded, train, 1));

    // Another file may lend its rows: the plain features of a fresh output come from it.
    let mut elsewhere = with(3, "book,seed=7");
    elsewhere.out = data.dir.path().join("elsewhere.parquet");
    elsewhere.reuse = vec![data.out()];
    let s = run(&elsewhere);
    assert_eq!((s.rows, s.computed), (8 * 4 + 2, 0));

    // No views: the plain rows come from the cache and the augmented ones disappear.
    let s = run(&data.config());
    assert_eq!((s.rows, s.computed, s.up_to_date), (10, 0, false));
    let plain = Features::read(&data.out()).unwrap();
    assert_eq!(plain.provenance.augment, "none");
    assert!(plain.rows.views.iter().all(|&v| v == 0));
}

#[test]
fn unusable_rows_and_newly_broken_images_are_skipped_and_counted() {
    let mut data = Data::new(6);
    data.manifest.rows[0].status = "truncated file".into();
    let broken = data.root().join(&data.manifest.rows[1].path);
    std::fs::write(&broken, b"not a png any more").unwrap();
    let s = run(&data.config());
    assert_eq!(s.skipped, 1);
    assert_eq!(s.failed.len(), 1);
    assert!(s.failed[0].0.ends_with(".png"), "{:?}", s.failed);
    assert_eq!(s.rows, 4);
}

#[test]
fn a_killed_run_resumes_and_ends_identical_to_an_uninterrupted_one() {
    let bin = env!("CARGO_BIN_EXE_convbase-extract");
    let data = Data::new(48);
    let manifest = data.manifest_path();
    let args = |out: &Path| {
        let mut c = Command::new(bin);
        c.args([
            "-q",
            "--size",
            "32",
            "--batch",
            "2",
            "--chunk-batches",
            "1",
            "-w",
            &weights(),
        ])
        .arg("-m")
        .arg(&manifest)
        .arg("-o")
        .arg(out);
        c
    };

    let reference = data.dir.path().join("reference.parquet");
    assert!(args(&reference).status().unwrap().success());

    let out = data.out();
    let work = data.dir.path().join(".features.parquet.work");
    let mut kills = 0;
    for _ in 0..3 {
        let mut child = args(&out).spawn().unwrap();
        // Wait for some completed chunks, then kill without warning.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let chunks = std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0);
            if chunks >= 2 * (kills + 1) || Instant::now() > deadline {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            kills += 1;
        }
        child.wait().unwrap();
        assert!(
            !out.exists() || Features::read(&out).is_ok(),
            "never a half-written file"
        );
    }
    assert!(kills >= 1, "the run finished before it could be killed");
    let status = args(&out).status().unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&reference).unwrap(),
        "resumed output differs from the uninterrupted run"
    );
    assert!(!work.exists(), "journal removed after completion");
}

/// An image edited after its manifest was written is skipped and reported (its features
/// would be stored under the manifest's hash of other content), the output never holds a
/// row for it, and once the file is back to what the manifest says, the next run computes
/// just it and gives what a fresh extraction gives.
#[test]
fn an_image_changed_after_prepare_is_skipped_and_never_cached() {
    let data = Data::new(6);
    let rows = &data.manifest.rows;
    let victim = data.root().join(&rows[2].path);
    let original = std::fs::read(&victim).unwrap();
    std::fs::copy(data.root().join(&rows[3].path), &victim).unwrap(); // decodes fine
    let s = run(&data.config());
    assert_eq!((s.rows, s.computed, s.failed.len()), (5, 5, 1), "{s:?}");
    assert_eq!(s.changed, [rows[2].path.clone()]);
    let (path, why) = &s.failed[0];
    assert_eq!(path, &rows[2].path);
    assert!(
        why.contains(&victim.display().to_string())
            && why.contains("changed since convbase-prepare")
            && why.contains(rows[2].sha256.as_deref().unwrap()),
        "{why}"
    );
    let f = Features::read(&data.out()).unwrap();
    assert!(!f.rows.paths.contains(&rows[2].path), "no row for it");

    // Still changed: nothing can be added, the output is left as it is.
    let bytes = std::fs::read(data.out()).unwrap();
    let s = run(&data.config());
    assert_eq!(
        (s.rows, s.computed, s.failed.len(), s.up_to_date),
        (5, 0, 1, true)
    );
    assert_eq!(std::fs::read(data.out()).unwrap(), bytes, "file untouched");

    // Back to the manifest's content: only it is computed, and the file equals a fresh one.
    std::fs::write(&victim, &original).unwrap();
    let s = run(&data.config());
    assert_eq!(
        (s.rows, s.computed, s.cached, s.up_to_date),
        (6, 1, 5, false)
    );
    let mut fresh = data.config();
    fresh.out = data.dir.path().join("fresh.parquet");
    run(&fresh);
    assert_eq!(
        std::fs::read(&fresh.out).unwrap(),
        std::fs::read(data.out()).unwrap()
    );
    assert!(run(&data.config()).up_to_date);
}

/// A file that no longer decodes and whose content changed is reported with the decoder's
/// reason, and the change.
#[test]
fn a_changed_file_that_does_not_decode_says_why() {
    let data = Data::new(3);
    let victim = data.root().join(&data.manifest.rows[1].path);
    std::fs::write(&victim, b"not an image any more").unwrap();
    let s = run(&data.config());
    assert_eq!(s.failed.len(), 1);
    assert!(s.changed.is_empty(), "prepare would not make it usable");
    let why = &s.failed[0].1;
    assert!(
        why.contains("not an image") && why.contains("changed since convbase-prepare"),
        "{why}"
    );
}
