//! Classification metrics of one split, computed the way Keras and scikit-learn define them.

use serde::Serialize;

/// Keras clips probabilities to `[EPSILON, 1 - EPSILON]` before taking logs.
pub const EPSILON: f64 = 1e-7;

/// Precision, recall and F1 of one class, treated as the positive class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    /// Of the images predicted as this class, the share that are; 0 when none are predicted
    /// (scikit-learn's `zero_division=0`).
    pub precision: f64,
    /// Of the images of this class, the share predicted as it; 0 when there are none.
    pub recall: f64,
    /// Harmonic mean of precision and recall; 0 when both are 0.
    pub f1: f64,
    /// Number of images of this class.
    pub support: usize,
}

/// Every number the report shows for one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitMetrics {
    pub split: String,
    pub count: usize,
    pub accuracy: f64,
    /// Mean negative log of the true class' probability, clipped like Keras ([`EPSILON`]).
    pub log_loss: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    pub per_class: Vec<ClassMetrics>,
    /// Unweighted means over classes (scikit-learn's `average="macro"`).
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    /// Area under the ROC curve of class 1's probability; only for two classes, and `None`
    /// when the split holds only one of them (the area is undefined then).
    pub roc_auc: Option<f64>,
}

/// The predictions of one split in plain arrays, labels already checked to be in range.
#[derive(Debug, Clone, Copy)]
pub struct Outcomes<'a> {
    pub labels: &'a [usize],
    pub predicted: &'a [usize],
    /// `labels.len() * classes.len()` probabilities, row after row.
    pub probabilities: &'a [f32],
}

/// Computes the metrics of one split.
///
/// # Panics
/// If the arrays' lengths disagree or a label is out of range (callers validate input).
pub fn evaluate(split: &str, classes: &[String], o: Outcomes<'_>) -> SplitMetrics {
    let n = o.labels.len();
    let c = classes.len();
    assert_eq!(o.predicted.len(), n, "one prediction per label");
    assert_eq!(
        o.probabilities.len(),
        n * c,
        "one probability per class and row"
    );

    let mut confusion = vec![vec![0usize; c]; c];
    for (&t, &p) in o.labels.iter().zip(o.predicted) {
        confusion[t][p] += 1;
    }
    let correct: usize = (0..c).map(|k| confusion[k][k]).sum();
    let accuracy = ratio(correct, n);

    let log_loss = if n == 0 {
        0.0
    } else {
        o.labels
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let p = f64::from(o.probabilities[i * c + t]).clamp(EPSILON, 1.0 - EPSILON);
                -p.ln()
            })
            .sum::<f64>()
            / n as f64
    };

    let per_class: Vec<ClassMetrics> = classes
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let tp = confusion[k][k];
            let predicted: usize = confusion.iter().map(|row| row[k]).sum();
            let support: usize = confusion[k].iter().sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                class: name.clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let mean = |f: fn(&ClassMetrics) -> f64| {
        if c == 0 {
            0.0
        } else {
            per_class.iter().map(f).sum::<f64>() / c as f64
        }
    };

    let roc_auc = if c == 2 {
        let scores: Vec<f64> = (0..n)
            .map(|i| f64::from(o.probabilities[i * 2 + 1]))
            .collect();
        let positive: Vec<bool> = o.labels.iter().map(|&t| t == 1).collect();
        roc_auc(&scores, &positive)
    } else {
        None
    };

    SplitMetrics {
        split: split.to_string(),
        count: n,
        accuracy,
        log_loss,
        macro_precision: mean(|m| m.precision),
        macro_recall: mean(|m| m.recall),
        macro_f1: mean(|m| m.f1),
        confusion,
        per_class,
        roc_auc,
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Area under the ROC curve by the rank (Mann-Whitney U) formula: the probability that a
/// random positive scores above a random negative, ties counted half. `None` unless both
/// classes occur.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), positive.len(), "one score per label");
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Ranks start at 1; a run of tied scores shares the mean of its ranks.
    let mut rank_sum_pos = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        let pos_in_run = order[start..end].iter().filter(|&&i| positive[i]).count();
        rank_sum_pos += mean_rank * pos_in_run as f64;
        start = end;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    Some((rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_half() {
        // One positive and one negative with the same score: a coin flip.
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.9, 0.1], &[true, false]), Some(1.0));
        assert_eq!(roc_auc(&[0.1, 0.9], &[true, false]), Some(0.0));
        assert_eq!(roc_auc(&[0.1, 0.9], &[true, true]), None);
    }
}
