//! The output layer's activation and Keras' losses: one sigmoid unit with binary
//! cross-entropy for two classes, softmax with categorical cross-entropy for more.

use candle_core::{D, Device, Tensor};

use crate::error::{Result, TrainError};

/// Keras' `epsilon()`: probabilities are clipped to [EPS, 1-EPS] before the logarithm.
pub const EPS: f32 = 1e-7;

/// How logits become class probabilities and a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Two classes: one unit, p(class 1) = sigmoid(z).
    Sigmoid,
    /// `n` classes: softmax over `n` units.
    Softmax(usize),
}

impl Output {
    pub fn for_classes(classes: usize) -> Result<Self> {
        match classes {
            0 | 1 => Err(TrainError::Rejected(format!(
                "a head needs at least 2 classes, the features have {classes}"
            ))),
            2 => Ok(Output::Sigmoid),
            n => Ok(Output::Softmax(n)),
        }
    }

    /// Units of the last Dense layer.
    pub fn units(self) -> usize {
        match self {
            Output::Sigmoid => 1,
            Output::Softmax(n) => n,
        }
    }

    pub fn classes(self) -> usize {
        match self {
            Output::Sigmoid => 2,
            Output::Softmax(n) => n,
        }
    }

    /// The targets tensor `losses` expects: labels as floats `(batch,)` for a sigmoid,
    /// one-hot rows `(batch, n)` for a softmax.
    pub fn targets(self, labels: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Output::Sigmoid => {
                let y: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
                Tensor::from_vec(y, labels.len(), device)
            }
            Output::Softmax(n) => {
                let mut y = vec![0f32; labels.len() * n];
                for (i, &l) in labels.iter().enumerate() {
                    y[i * n + l as usize] = 1.0;
                }
                Tensor::from_vec(y, (labels.len(), n), device)
            }
        }
    }

    /// Class probabilities.
    ///
    /// # Shapes
    /// `logits`: (batch, units) -> (batch, classes)
    pub fn probabilities(self, logits: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Output::Sigmoid => {
                let p = candle_nn::ops::sigmoid(&logits.squeeze(1)?)?;
                Tensor::stack(&[p.affine(-1.0, 1.0)?, p], 1)
            }
            Output::Softmax(_) => candle_nn::ops::softmax(logits, D::Minus1),
        }
    }

    /// Per-sample losses and class probabilities, as Keras computes them from the
    /// activated output: BCE / categorical cross-entropy on probabilities clipped to
    /// [EPS, 1-EPS] (so a clipped probability passes no gradient).
    ///
    /// # Shapes
    /// `logits`: (batch, units), `targets`: see [`Output::targets`] ->
    /// losses (batch,), probabilities (batch, classes)
    pub fn losses(
        self,
        logits: &Tensor,
        targets: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        match self {
            Output::Sigmoid => {
                let p = candle_nn::ops::sigmoid(&logits.squeeze(1)?)?;
                let pc = p.clamp(EPS, 1.0 - EPS)?;
                let not_y = targets.affine(-1.0, 1.0)?;
                let log_p = pc.log()?;
                let log_not_p = pc.affine(-1.0, 1.0)?.log()?;
                let losses = (targets.mul(&log_p)? + not_y.mul(&log_not_p)?)?.neg()?;
                let probs = Tensor::stack(&[p.affine(-1.0, 1.0)?, p], 1)?;
                Ok((losses, probs))
            }
            Output::Softmax(_) => {
                let s = candle_nn::ops::softmax(logits, D::Minus1)?;
                let sc = s.clamp(EPS, 1.0 - EPS)?;
                let losses = targets.mul(&sc.log()?)?.sum(D::Minus1)?.neg()?;
                Ok((losses, s))
            }
        }
    }
}

/// Arg-max of each row of a `(rows, classes)` probability buffer; ties go to the lower
/// class, which for two classes is Keras' `p > 0.5` rule.
pub fn argmax_rows(probs: &[f32], classes: usize) -> Vec<u32> {
    probs
        .chunks_exact(classes)
        .map(|row| {
            let mut best = 0;
            for (i, &p) in row.iter().enumerate() {
                if p > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_bounds_the_loss_of_a_confident_mistake() {
        let dev = Device::Cpu;
        // sigmoid(40) rounds to 1 in f32: without clipping the loss of label 0 is infinite.
        let logits = Tensor::new(&[[40f32], [-40.0]], &dev).unwrap();
        let y = Output::Sigmoid.targets(&[0, 1], &dev).unwrap();
        let (l, _) = Output::Sigmoid.losses(&logits, &y).unwrap();
        let l = l.to_vec1::<f32>().unwrap();
        // -ln(1e-7) = 16.118; the clip bound 1-1e-7 itself rounds in f32, hence the slack.
        for v in l {
            assert!((v - 16.118).abs() < 0.2, "{v}");
        }
    }

    #[test]
    fn softmax_loss_is_minus_log_probability() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[1f32, 2.0, 3.0]], &dev).unwrap();
        let y = Output::Softmax(3).targets(&[1], &dev).unwrap();
        let (l, p) = Output::Softmax(3).losses(&logits, &y).unwrap();
        let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
        let p1 = e[1] / e.iter().sum::<f64>();
        assert!((l.to_vec1::<f32>().unwrap()[0] as f64 + p1.ln()).abs() < 1e-6);
        assert!((p.to_vec2::<f32>().unwrap()[0][1] as f64 - p1).abs() < 1e-6);
    }

    #[test]
    fn argmax_prefers_lower_class_on_ties() {
        assert_eq!(argmax_rows(&[0.5, 0.5, 0.2, 0.8, 0.9, 0.1], 2), [0, 1, 0]);
    }
}
