//! Evaluation report of a head run: metrics, confusion matrix, ROC AUC, worst errors, one HTML page.
