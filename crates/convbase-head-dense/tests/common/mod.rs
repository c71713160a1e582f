//! Synthetic features files for the CLI tests: two (or more) separable Gaussian clusters.

use std::path::Path;

use convbase_format::{FeatureBatch, FeatureProvenance, FeaturesWriter, Split};

pub fn provenance(dim: usize, classes: usize, layer: &str) -> FeatureProvenance {
    FeatureProvenance {
        weights_sha256: "ab".repeat(32),
        weights_source: "synthetic".into(),
        layer: layer.into(),
        input_size: 150,
        resize_filter: "nearest".into(),
        preprocess: "rescale".into(),
        pool: "none".into(),
        feature_shape: vec![1, 1, dim],
        flatten_order: "hwc".into(),
        augment: "none".into(),
        views: 0,
        manifest_sha256: "cd".repeat(32),
        classes: (0..classes).map(|c| format!("class{c}")).collect(),
        dataset_root: "/synthetic".into(),
    }
}

/// A small deterministic generator (xorshift), enough for test data.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Approximately N(0, 1) (sum of 12 uniforms).
    pub fn normal(&mut self) -> f32 {
        (0..12).map(|_| self.uniform()).sum::<f32>() - 6.0
    }
}

/// Rows per split, by class: `counts[split][class]`; `views` rows per training image.
pub struct Spec<'a> {
    pub dim: usize,
    pub counts: [&'a [usize]; 3],
    pub separation: f32,
    pub views: u32,
    pub layer: &'a str,
}

pub fn write_features(path: &Path, spec: &Spec) {
    let classes = spec.counts[0].len();
    let prov = provenance(spec.dim, classes, spec.layer);
    let mut w = FeaturesWriter::create(path, &prov).unwrap();
    let mut noise = Noise::new(7);
    let mut batch = FeatureBatch::default();
    for (split, counts) in Split::ALL.iter().zip(spec.counts) {
        for (class, &n) in counts.iter().enumerate() {
            for i in 0..n {
                let views = if *split == Split::Train {
                    spec.views
                } else {
                    1
                };
                for view in 0..views {
                    batch.paths.push(format!("{split}/class{class}/{i}.png"));
                    batch.sha256.push(format!(
                        "{:064x}",
                        batch.paths.len() as u64 - u64::from(view)
                    ));
                    batch.labels.push(class as i32);
                    batch.splits.push(*split);
                    batch.views.push(view);
                    for d in 0..spec.dim {
                        let centre = if d % classes == class {
                            spec.separation
                        } else {
                            0.0
                        };
                        batch.values.push(centre + noise.normal());
                    }
                }
            }
        }
    }
    w.write(&batch).unwrap();
    w.finish().unwrap();
}

/// The usual data set: 32 dims, 100/50/50 per class for two classes.
pub fn two_clusters(path: &Path) {
    write_features(
        path,
        &Spec {
            dim: 32,
            counts: [&[100, 100], &[50, 50], &[50, 50]],
            separation: 1.5,
            views: 1,
            layer: "block5_pool",
        },
    );
}
