//! Exact comparisons of stage outputs: a resumed or repeated run must give the same rows,
//! and the same float bits, as an uninterrupted one. Each returns what differs first.

use std::path::Path;

use convbase_format::{Features, Manifest, Predictions};

/// Manifests equal row for row, footer included.
pub fn manifests(a: &Manifest, b: &Manifest) -> Result<(), String> {
    if a.meta != b.meta {
        return Err(format!("footers differ: {:?} vs {:?}", a.meta, b.meta));
    }
    rows(&a.rows, &b.rows, |r| r.path.clone())
}

fn rows<T: PartialEq + std::fmt::Debug>(
    a: &[T],
    b: &[T],
    name: impl Fn(&T) -> String,
) -> Result<(), String> {
    if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
        return Err(format!(
            "row {i} ({}) differs: {:?} vs {:?}",
            name(&a[i]),
            a[i],
            b[i]
        ));
    }
    if a.len() != b.len() {
        return Err(format!("{} rows vs {}", a.len(), b.len()));
    }
    Ok(())
}

/// Features equal: provenance, row keys, and every value bit for bit.
pub fn features(a: &Features, b: &Features) -> Result<(), String> {
    if a.provenance != b.provenance {
        return Err(format!(
            "provenance differs: {:?} vs {:?}",
            a.provenance, b.provenance
        ));
    }
    let (x, y) = (&a.rows, &b.rows);
    let key = |r: &convbase_format::FeatureBatch, i: usize| {
        (
            r.paths[i].clone(),
            r.sha256[i].clone(),
            r.labels[i],
            r.splits[i],
            r.views[i],
        )
    };
    if x.len() != y.len() {
        return Err(format!("{} rows vs {}", x.len(), y.len()));
    }
    for i in 0..x.len() {
        if key(x, i) != key(y, i) {
            return Err(format!(
                "row {i} differs: {:?} vs {:?}",
                key(x, i),
                key(y, i)
            ));
        }
        let (u, v) = (x.row(i, a.dim), y.row(i, b.dim));
        if let Some(j) = (0..u.len()).find(|&j| u[j].to_bits() != v[j].to_bits()) {
            return Err(format!(
                "row {i} ({}) value {j}: {} vs {} (not bitwise equal)",
                x.paths[i], u[j], v[j]
            ));
        }
    }
    Ok(())
}

/// Predictions equal row for row, probabilities bit for bit.
pub fn predictions(a: &Predictions, b: &Predictions) -> Result<(), String> {
    if (&a.classes, &a.head, &a.features) != (&b.classes, &b.head, &b.features) {
        return Err("footers differ (classes, head or features provenance)".into());
    }
    let bits = |p: &Predictions| -> Vec<_> {
        p.rows
            .iter()
            .map(|r| {
                let probs: Vec<u32> = r.probabilities.iter().map(|v| v.to_bits()).collect();
                (r.path.clone(), r.split, r.label, r.view, probs, r.predicted)
            })
            .collect()
    };
    rows(&bits(a), &bits(b), |r| r.0.clone())
}

/// Two safetensors files hold the same tensors (names, dtypes, shapes, bytes); metadata,
/// which may hold timings, is not compared.
pub fn safetensors_files(a: &Path, b: &Path) -> Result<(), String> {
    let (ba, bb) = (read(a)?, read(b)?);
    let ta = safetensors::SafeTensors::deserialize(&ba).map_err(|e| format!("{a:?}: {e}"))?;
    let tb = safetensors::SafeTensors::deserialize(&bb).map_err(|e| format!("{b:?}: {e}"))?;
    let mut names: Vec<String> = ta.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut other: Vec<String> = tb.names().into_iter().map(str::to_string).collect();
    other.sort();
    if names != other {
        return Err(format!("tensor names differ: {names:?} vs {other:?}"));
    }
    for name in &names {
        let (x, y) = (ta.tensor(name).unwrap(), tb.tensor(name).unwrap());
        if (x.dtype(), x.shape(), x.data()) != (y.dtype(), y.shape(), y.data()) {
            return Err(format!("tensor `{name}` differs"));
        }
    }
    Ok(())
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}
