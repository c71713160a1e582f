//! Which feature rows a head trains and validates on, batching them without copying the
//! whole data set, and class weights.

use std::collections::HashMap;
use std::str::FromStr;

use convbase_format::{Features, Split};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Row indices of a features file, by role. Rows stay in the file's buffer; batches are
/// gathered from it.
#[derive(Debug, Clone)]
pub struct Rows {
    /// Per training image, its rows (one per view), in file order.
    pub train_images: Vec<Vec<usize>>,
    /// View 0 rows of each training image (for class counts).
    pub train_view0: Vec<usize>,
    /// View 0 rows of split `validation`.
    pub validation: Vec<usize>,
}

impl Rows {
    pub fn new(features: &Features) -> Result<Self> {
        let r = &features.rows;
        let mut by_path: HashMap<&str, usize> = HashMap::new();
        let mut train_images: Vec<Vec<usize>> = Vec::new();
        let mut train_view0 = Vec::new();
        let mut validation = Vec::new();
        for i in 0..r.len() {
            match r.splits[i] {
                Split::Train => {
                    let next = train_images.len();
                    let image = *by_path.entry(r.paths[i].as_str()).or_insert(next);
                    if image == next {
                        train_images.push(Vec::new());
                    }
                    train_images[image].push(i);
                    if r.views[i] == 0 {
                        train_view0.push(i);
                    }
                }
                Split::Validation if r.views[i] == 0 => validation.push(i),
                _ => {}
            }
        }
        if train_images.is_empty() {
            return Err(TrainError::Rejected(
                "the features file has no rows of split `train`".into(),
            ));
        }
        Ok(Rows {
            train_images,
            train_view0,
            validation,
        })
    }

    /// True when some training image has more than one view.
    pub fn has_views(&self) -> bool {
        self.train_images.iter().any(|v| v.len() > 1)
    }

    /// The training rows of one epoch, shuffled: one view per image drawn from `views`
    /// (uniformly among the image's rows, view 0 included), or every row with `all_views`.
    pub fn epoch(
        &self,
        all_views: bool,
        views: &mut ChaCha8Rng,
        shuffle: &mut ChaCha8Rng,
    ) -> Vec<usize> {
        let mut rows: Vec<usize> = if all_views {
            self.train_images.iter().flatten().copied().collect()
        } else {
            self.train_images
                .iter()
                .map(|v| {
                    if v.len() == 1 {
                        v[0]
                    } else {
                        v[views.random_range(0..v.len())]
                    }
                })
                .collect()
        };
        rows.shuffle(shuffle);
        rows
    }
}

/// Copies the feature vectors of `rows` into `buf` (cleared first), row after row.
pub fn gather(features: &Features, rows: &[usize], buf: &mut Vec<f32>) {
    buf.clear();
    for &i in rows {
        buf.extend_from_slice(features.rows.row(i, features.dim));
    }
}

/// `--class-weight`: how much each class's samples count in the training loss.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeight {
    /// n_samples / (n_classes * n_class), as scikit-learn's `balanced`.
    Balanced,
    /// `CLASS=WEIGHT` pairs, CLASS a class name or label; classes not named weigh 1.
    Explicit(Vec<(String, f32)>),
}

impl FromStr for ClassWeight {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "balanced" {
            return Ok(ClassWeight::Balanced);
        }
        s.split(',')
            .map(|pair| {
                let (class, w) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("`{pair}`: expected CLASS=WEIGHT or `balanced`"))?;
                let w: f32 = w
                    .trim()
                    .parse()
                    .map_err(|e| format!("`{pair}`: weight: {e}"))?;
                if !(w.is_finite() && w >= 0.0) {
                    return Err(format!("`{pair}`: weight must be finite and >= 0"));
                }
                Ok((class.trim().to_string(), w))
            })
            .collect::<Result<Vec<_>, String>>()
            .map(ClassWeight::Explicit)
    }
}

/// The weight of each class, by label, as recorded in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassWeights(pub Vec<f32>);

impl ClassWeight {
    /// Resolves against the class names and the labels of the training images.
    pub fn resolve(&self, classes: &[String], train_labels: &[i32]) -> Result<ClassWeights> {
        let n = classes.len();
        match self {
            ClassWeight::Balanced => {
                let mut counts = vec![0usize; n];
                for &l in train_labels {
                    counts[l as usize] += 1;
                }
                let total = train_labels.len() as f64;
                Ok(ClassWeights(
                    counts
                        .iter()
                        .map(|&c| {
                            if c == 0 {
                                0.0
                            } else {
                                (total / (n as f64 * c as f64)) as f32
                            }
                        })
                        .collect(),
                ))
            }
            ClassWeight::Explicit(pairs) => {
                let mut w = vec![1.0; n];
                for (class, weight) in pairs {
                    let label = classes
                        .iter()
                        .position(|c| c == class)
                        .or_else(|| class.parse::<usize>().ok().filter(|&l| l < n))
                        .ok_or_else(|| {
                            TrainError::Rejected(format!(
                                "--class-weight: `{class}` is not one of the classes {classes:?}"
                            ))
                        })?;
                    w[label] = *weight;
                }
                Ok(ClassWeights(w))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features_with_views() -> Features {
        use convbase_format::{FeatureBatch, FeatureProvenance};
        let mut rows = FeatureBatch::default();
        // Three training images with 3 views each, one validation image with 2 views.
        for (path, split, views) in [
            ("a", Split::Train, 3),
            ("b", Split::Train, 3),
            ("c", Split::Train, 3),
            ("v", Split::Validation, 2),
        ] {
            for view in 0..views {
                rows.paths.push(path.into());
                rows.sha256.push(path.into());
                rows.labels.push(0);
                rows.splits.push(split);
                rows.views.push(view);
                rows.values.push(view as f32);
            }
        }
        Features {
            provenance: FeatureProvenance {
                weights_sha256: String::new(),
                weights_source: String::new(),
                layer: String::new(),
                input_size: 1,
                resize_filter: String::new(),
                preprocess: String::new(),
                pool: String::new(),
                feature_shape: vec![1],
                flatten_order: String::new(),
                augment: String::new(),
                views: 0,
                manifest_sha256: String::new(),
                classes: vec!["x".into(), "y".into()],
                dataset_root: String::new(),
            },
            dim: 1,
            rows,
        }
    }

    #[test]
    fn one_view_per_image_each_epoch_unless_all_views() {
        use crate::rng::{Stream, rng};
        let f = features_with_views();
        let rows = Rows::new(&f).unwrap();
        assert!(rows.has_views());
        assert_eq!(rows.train_images.len(), 3);
        assert_eq!(rows.train_view0, [0, 3, 6]);
        assert_eq!(rows.validation, [9], "validation uses view 0 only");
        let (mut views, mut shuffle) = (rng(1, Stream::Views), rng(1, Stream::Shuffle));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let epoch = rows.epoch(false, &mut views, &mut shuffle);
            let mut images: Vec<_> = epoch.iter().map(|&i| &f.rows.paths[i]).collect();
            images.sort();
            assert_eq!(images, ["a", "b", "c"], "each image exactly once");
            seen.extend(epoch.iter().map(|&i| f.rows.views[i]));
        }
        assert_eq!(seen.len(), 3, "every view gets drawn");
        let mut all = rows.epoch(true, &mut views, &mut shuffle);
        all.sort();
        assert_eq!(all, (0..9).collect::<Vec<_>>());
    }

    #[test]
    fn balanced_weights_equalise_class_totals() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let w = ClassWeight::Balanced
            .resolve(&classes, &[0, 0, 0, 1])
            .unwrap();
        // 4 / (2*3) and 4 / (2*1): each class then totals 2.
        assert_eq!(w.0, vec![4.0 / 6.0, 2.0]);
    }

    #[test]
    fn explicit_weights_by_name_or_label() {
        let classes = vec!["cats".to_string(), "dogs".to_string(), "eels".to_string()];
        let w: ClassWeight = "dogs=2.5,2=0".parse().unwrap();
        assert_eq!(w.resolve(&classes, &[]).unwrap().0, vec![1.0, 2.5, 0.0]);
        let bad: ClassWeight = "cows=2".parse().unwrap();
        assert!(bad.resolve(&classes, &[]).is_err());
        assert!("dogs".parse::<ClassWeight>().is_err());
        assert!("dogs=-1".parse::<ClassWeight>().is_err());
    }
}
