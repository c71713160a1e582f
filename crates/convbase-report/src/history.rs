//! The run's `history.csv` (one row per epoch), read leniently: the report shows what it
//! can and says what it could not.

use std::path::Path;

use serde::Serialize;

/// Per-epoch numbers as the head wrote them (`epoch,loss,acc,val_loss,val_acc,seconds`;
/// columns are taken by name, so extra or reordered columns are fine).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub columns: Vec<String>,
    /// One row per epoch, one value per column.
    pub rows: Vec<Vec<f64>>,
}

impl History {
    /// Reads `path`; the error is a sentence for the report's notes.
    pub fn read(path: &Path) -> Result<History, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<History, String> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = lines.next().ok_or("empty file")?;
        let columns: Vec<String> = header.split(',').map(|s| s.trim().to_string()).collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let values = line
                .split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<Result<Vec<f64>, _>>()
                .map_err(|e| format!("line {}: {e}", i + 2))?;
            if values.len() != columns.len() {
                return Err(format!(
                    "line {}: {} values for {} columns",
                    i + 2,
                    values.len(),
                    columns.len()
                ));
            }
            rows.push(values);
        }
        if rows.is_empty() {
            return Err("no epochs".into());
        }
        Ok(History { columns, rows })
    }

    /// The values of column `name`, if present.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let i = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(|r| r[i]).collect())
    }

    /// Summary for `metrics.json`: epochs, the last row, and the epoch of best `val_acc`.
    pub fn summary(&self) -> HistorySummary {
        let last = self.rows.last().expect("parse refuses an empty history");
        let best = self.column("val_acc").and_then(|acc| {
            let epochs = self.column("epoch")?;
            acc.iter()
                .zip(&epochs)
                .max_by(|a, b| a.0.total_cmp(b.0))
                .map(|(&val_acc, &epoch)| BestEpoch { epoch, val_acc })
        });
        HistorySummary {
            epochs: self.rows.len(),
            last: self
                .columns
                .iter()
                .cloned()
                .zip(last.iter().copied())
                .collect(),
            best_val_acc: best,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistorySummary {
    pub epochs: usize,
    pub last: std::collections::BTreeMap<String, f64>,
    pub best_val_acc: Option<BestEpoch>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BestEpoch {
    pub epoch: f64,
    pub val_acc: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_finds_best_epoch() {
        let h = History::parse(
            "epoch,loss,acc,val_loss,val_acc,seconds\n1,0.6,0.7,0.5,0.8,1.5\n2,0.4,0.8,0.45,0.85,1.4\n3,0.3,0.9,0.5,0.84,1.4\n",
        )
        .unwrap();
        let s = h.summary();
        assert_eq!(s.epochs, 3);
        assert_eq!(s.last["loss"], 0.3);
        assert_eq!(
            s.best_val_acc,
            Some(BestEpoch {
                epoch: 2.0,
                val_acc: 0.85
            })
        );
    }

    #[test]
    fn rejects_ragged_and_non_numeric_rows() {
        assert!(
            History::parse("epoch,loss\n1\n")
                .unwrap_err()
                .contains("line 2")
        );
        assert!(
            History::parse("epoch,loss\n1,x\n")
                .unwrap_err()
                .contains("line 2")
        );
        assert!(History::parse("epoch,loss\n").is_err());
    }
}
