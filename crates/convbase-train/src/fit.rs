//! The training loop: Keras' `fit` on arrays (shuffle each epoch, last partial batch
//! kept), per-epoch validation, early stopping and keeping the best epoch.

use std::time::Instant;

use candle_core::{Device, Tensor};
use convbase_format::Features;
use serde::{Deserialize, Serialize};

use crate::data::{ClassWeights, Rows, gather};
use crate::error::{Result, TrainError};
use crate::head::{Head, Model};
use crate::layers::{DropoutMasks, Mode, SeededMasks};
use crate::optim::Optimizer;
use crate::output::argmax_rows;
use crate::rng::{Stream, rng};

/// What one training step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The batch's loss as Keras reports it: sum(w_i * l_i) / batch + penalty, computed
    /// before the update.
    pub loss: f32,
    /// Samples whose arg-max probability was their label (with dropout active).
    pub correct: usize,
}

/// A model being trained: the model, its optimiser and the class weights.
pub struct Trainer<H: Head> {
    model: Model<H>,
    optimizer: Box<dyn Optimizer>,
    class_weights: Option<ClassWeights>,
}

impl<H: Head> std::fmt::Debug for Trainer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("model", &self.model)
            .field("class_weights", &self.class_weights)
            .finish()
    }
}

impl<H: Head> Trainer<H> {
    pub fn new(
        model: Model<H>,
        optimizer: Box<dyn Optimizer>,
        class_weights: Option<ClassWeights>,
    ) -> Self {
        Trainer {
            model,
            optimizer,
            class_weights,
        }
    }

    pub fn model(&self) -> &Model<H> {
        &self.model
    }

    pub fn into_model(self) -> Model<H> {
        self.model
    }

    /// One forward/backward pass and update on a batch.
    ///
    /// # Shapes
    /// `x`: (batch, inputs); `labels`: batch
    pub fn step(
        &mut self,
        x: &Tensor,
        labels: &[u32],
        masks: &mut dyn DropoutMasks,
    ) -> Result<StepStats> {
        let m = &self.model;
        let n = labels.len();
        let logits = m.head.forward(x, &mut Mode::Train(masks))?;
        let targets = m.output.targets(labels, x.device())?;
        let (losses, probs) = m.output.losses(&logits, &targets)?;
        let losses = match &self.class_weights {
            Some(w) => {
                let w: Vec<f32> = labels.iter().map(|&l| w.0[l as usize]).collect();
                losses.mul(&Tensor::from_vec(w, n, x.device())?)?
            }
            None => losses,
        };
        let mut loss = (losses.sum_all()? / n as f64)?;
        if let Some(p) = m.head.penalty()? {
            loss = (loss + p)?;
        }
        let grads = m.params.gradients(&loss)?;
        self.optimizer.step(&grads)?;
        let predicted = argmax_rows(&probs.flatten_all()?.to_vec1::<f32>()?, m.output.classes());
        let correct = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
        Ok(StepStats {
            loss: loss.to_scalar::<f32>()?,
            correct,
        })
    }

    /// Loss (unweighted mean + penalty, as Keras' `val_loss`) and accuracy over `rows`.
    pub fn evaluate(&self, features: &Features, rows: &[usize]) -> Result<(f32, f32)> {
        let m = &self.model;
        let mut buf = Vec::new();
        let mut loss_sum = 0f64;
        let mut correct = 0usize;
        for chunk in rows.chunks(512) {
            gather(features, chunk, &mut buf);
            let x = Tensor::from_slice(&buf, (chunk.len(), features.dim), &Device::Cpu)?;
            let labels = labels_of(features, chunk);
            let logits = m.head.forward(&x, &mut Mode::Eval)?;
            let targets = m.output.targets(&labels, &Device::Cpu)?;
            let (losses, probs) = m.output.losses(&logits, &targets)?;
            loss_sum += losses
                .to_dtype(candle_core::DType::F64)?
                .sum_all()?
                .to_scalar::<f64>()?;
            let predicted =
                argmax_rows(&probs.flatten_all()?.to_vec1::<f32>()?, m.output.classes());
            correct += predicted
                .iter()
                .zip(&labels)
                .filter(|(p, l)| p == l)
                .count();
        }
        let penalty = match m.head.penalty()? {
            Some(p) => p.to_scalar::<f32>()? as f64,
            None => 0.0,
        };
        let n = rows.len() as f64;
        Ok(((loss_sum / n + penalty) as f32, (correct as f64 / n) as f32))
    }
}

fn labels_of(features: &Features, rows: &[usize]) -> Vec<u32> {
    rows.iter()
        .map(|&i| features.rows.labels[i] as u32)
        .collect()
}

/// The validation metric early stopping and `--keep-best` watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation loss, lower is better.
    ValLoss,
    /// Validation accuracy, higher is better.
    ValAcc,
}

/// How long to train and what to keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSettings {
    pub epochs: usize,
    pub batch_size: usize,
    /// Train on every view of every image each epoch instead of drawing one per image.
    pub all_views: bool,
    pub monitor: Monitor,
    /// Stop after this many epochs without improvement of `monitor` (Keras' `EarlyStopping`).
    pub patience: Option<usize>,
    /// An improvement must exceed this.
    pub min_delta: f32,
    /// End with the weights of the best epoch by `monitor` (Keras' `restore_best_weights`).
    pub keep_best: bool,
}

/// One line of `history.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub loss: f32,
    pub acc: f32,
    pub val_loss: Option<f32>,
    pub val_acc: Option<f32>,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
}

/// How a fit ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOutcome {
    pub epochs_run: usize,
    /// Best epoch by the monitored metric (1-based), when there is validation data.
    pub best_epoch: Option<usize>,
    /// The epoch whose weights the model holds.
    pub weights_epoch: usize,
    pub stopped_early: bool,
    pub seconds: f64,
}

impl<H: Head> Trainer<H> {
    /// Trains for `settings.epochs` epochs (fewer if early stopping triggers), calling
    /// `on_epoch` after each. Every random draw comes from `seed`.
    pub fn fit(
        &mut self,
        features: &Features,
        rows: &Rows,
        settings: &FitSettings,
        seed: u64,
        mut on_epoch: impl FnMut(&EpochMetrics),
    ) -> Result<(Vec<EpochMetrics>, FitOutcome)> {
        let needs_validation = settings.patience.is_some() || settings.keep_best;
        if needs_validation && rows.validation.is_empty() {
            return Err(TrainError::Rejected(
                "early stopping and --keep-best need validation rows, the features have none"
                    .into(),
            ));
        }
        let started = Instant::now();
        let mut shuffle = rng(seed, Stream::Shuffle);
        let mut views = rng(seed, Stream::Views);
        let mut masks = SeededMasks(rng(seed, Stream::Dropout));
        let mut buf = Vec::with_capacity(settings.batch_size * features.dim);
        let mut history = Vec::new();
        let mut best: Option<(usize, f32)> = None;
        let mut best_weights: Option<Vec<Tensor>> = None;
        let mut stopped_early = false;
        for epoch in 1..=settings.epochs {
            let t0 = Instant::now();
            let order = rows.epoch(settings.all_views, &mut views, &mut shuffle);
            let (mut loss_sum, mut correct) = (0f64, 0usize);
            for batch in order.chunks(settings.batch_size) {
                gather(features, batch, &mut buf);
                let x = Tensor::from_slice(&buf, (batch.len(), features.dim), &Device::Cpu)?;
                let s = self.step(&x, &labels_of(features, batch), &mut masks)?;
                loss_sum += s.loss as f64 * batch.len() as f64;
                correct += s.correct;
            }
            let (val_loss, val_acc) = if rows.validation.is_empty() {
                (None, None)
            } else {
                let (l, a) = self.evaluate(features, &rows.validation)?;
                (Some(l), Some(a))
            };
            let metrics = EpochMetrics {
                epoch,
                loss: (loss_sum / order.len() as f64) as f32,
                acc: (correct as f64 / order.len() as f64) as f32,
                val_loss,
                val_acc,
                seconds: t0.elapsed().as_secs_f64(),
            };
            on_epoch(&metrics);
            history.push(metrics);
            let Some(value) = (match settings.monitor {
                Monitor::ValLoss => val_loss,
                Monitor::ValAcc => val_acc.map(|a| -a),
            }) else {
                continue;
            };
            let improved = best.is_none_or(|(_, b)| value < b - settings.min_delta);
            if improved {
                best = Some((epoch, value));
                if settings.keep_best {
                    best_weights = Some(
                        self.model
                            .vars()
                            .iter()
                            .map(|v| v.as_tensor().copy())
                            .collect::<candle_core::Result<_>>()?,
                    );
                }
            } else if let (Some(patience), Some((best_epoch, _))) = (settings.patience, best)
                && epoch - best_epoch >= patience
            {
                stopped_early = true;
                break;
            }
        }
        let epochs_run = history.len();
        let mut weights_epoch = epochs_run;
        if let (Some(weights), Some((best_epoch, _))) = (best_weights, best) {
            for (var, w) in self.model.vars().iter().zip(&weights) {
                var.set(w)?;
            }
            weights_epoch = best_epoch;
        }
        let outcome = FitOutcome {
            epochs_run,
            best_epoch: best.map(|(e, _)| e),
            weights_epoch,
            stopped_early,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((history, outcome))
    }
}

/// Writes `history.csv` content: `epoch,loss,acc,val_loss,val_acc,seconds`, validation
/// fields empty without validation data. Values are printed in full (shortest exact form).
pub fn history_csv(history: &[EpochMetrics]) -> String {
    let mut s = String::from("epoch,loss,acc,val_loss,val_acc,seconds\n");
    let opt = |v: Option<f32>| v.map(|v| v.to_string()).unwrap_or_default();
    for m in history {
        s.push_str(&format!(
            "{},{},{},{},{},{:.3}\n",
            m.epoch,
            m.loss,
            m.acc,
            opt(m.val_loss),
            opt(m.val_acc),
            m.seconds
        ));
    }
    s
}
