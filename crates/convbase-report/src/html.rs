//! `report.html`: one self-contained page. Pictures are embedded as base64 data URIs so the
//! file can be mailed or archived alone.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::MetricsFile;
use crate::history::History;

/// Everything the page shows.
pub(crate) struct Page<'a> {
    pub metrics: &'a MetricsFile,
    pub history: Option<&'a History>,
    pub config: Option<&'a serde_json::Value>,
    pub confusion_png: &'a [u8],
    pub errors_png: &'a [u8],
    pub curves_png: Option<&'a [u8]>,
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}\
th{background:#eee}td.l,th.l{text-align:left}\
img{max-width:100%;border:1px solid #ddd}\
pre{background:#f6f6f6;padding:1em;overflow:auto}\
.note{color:#8a4b00}";

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn img(png: &[u8], alt: &str) -> String {
    format!(
        "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
        esc(alt),
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

fn f4(v: f64) -> String {
    format!("{v:.4}")
}

pub(crate) fn render(p: &Page<'_>) -> String {
    let m = p.metrics;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>convbase report: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&m.run_dir)
    );
    let _ = writeln!(h, "<h1>convbase report</h1>");
    let f = &m.features;
    let _ = writeln!(h, "<table>");
    for (k, v) in [
        ("run directory", m.run_dir.clone()),
        ("head", m.head.clone()),
        ("classes", m.classes.join(", ")),
        (
            "weights",
            format!("{} (sha256 {})", f.weights_source, f.weights_sha256),
        ),
        (
            "features",
            format!(
                "{} at {}px, resize {}, preprocess {}, pool {}, shape {:?} ({})",
                f.layer,
                f.input_size,
                f.resize_filter,
                f.preprocess,
                f.pool,
                f.feature_shape,
                f.flatten_order
            ),
        ),
        ("augmentation", f.augment.clone()),
        ("data set root", f.dataset_root.clone()),
        ("evaluated", format!("view {} (unaugmented images)", m.view)),
    ] {
        let _ = writeln!(
            h,
            "<tr><th class=\"l\">{k}</th><td class=\"l\">{}</td></tr>",
            esc(&v)
        );
    }
    let _ = writeln!(h, "</table>");

    let _ = writeln!(
        h,
        "<h2>Metrics</h2>\n<table><tr><th class=\"l\">split</th><th>n</th><th>accuracy</th><th>log loss</th><th>ROC AUC</th><th>macro precision</th><th>macro recall</th><th>macro F1</th></tr>"
    );
    for s in &m.splits {
        let auc = s.roc_auc.map_or_else(|| "&ndash;".to_string(), f4);
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{auc}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.split),
            s.count,
            f4(s.accuracy),
            f4(s.log_loss),
            f4(s.macro_precision),
            f4(s.macro_recall),
            f4(s.macro_f1)
        );
    }
    let _ = writeln!(
        h,
        "</table><p>Log loss: mean of &minus;ln p(true class), p clipped to [1e-7, 1&minus;1e-7] as in Keras. \
         ROC AUC (two classes): rank statistic of p({}), ties counted half.</p>",
        esc(m.classes.get(1).map_or("", String::as_str))
    );

    let _ = writeln!(
        h,
        "<h2>Confusion matrices</h2>\n{}",
        img(p.confusion_png, "confusion matrices")
    );
    for s in &m.splits {
        let _ = write!(
            h,
            "<h3>{}</h3><table><tr><th class=\"l\">true \\ predicted</th>",
            esc(&s.split)
        );
        for c in &m.classes {
            let _ = write!(h, "<th>{}</th>", esc(c));
        }
        let _ = writeln!(h, "</tr>");
        for (c, row) in m.classes.iter().zip(&s.confusion) {
            let _ = write!(h, "<tr><th class=\"l\">{}</th>", esc(c));
            for v in row {
                let _ = write!(h, "<td>{v}</td>");
            }
            let _ = writeln!(h, "</tr>");
        }
        let _ = writeln!(
            h,
            "</table><table><tr><th class=\"l\">class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
        );
        for c in &s.per_class {
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.class),
                f4(c.precision),
                f4(c.recall),
                f4(c.f1),
                c.support
            );
        }
        let _ = writeln!(h, "</table>");
    }

    let _ = writeln!(h, "<h2>Training</h2>");
    match p.curves_png {
        Some(png) => {
            let _ = writeln!(h, "{}", img(png, "training curves"));
        }
        None => {
            let _ = writeln!(h, "<p class=\"note\">No training curves (see notes).</p>");
        }
    }
    match p.history {
        Some(hist) => {
            let _ = write!(h, "<table><tr>");
            for c in &hist.columns {
                let _ = write!(h, "<th>{}</th>", esc(c));
            }
            let _ = writeln!(h, "</tr>");
            for row in &hist.rows {
                let _ = write!(h, "<tr>");
                for v in row {
                    // Whole numbers (epochs) without decimals, the rest to 4 places.
                    let _ = if v.fract() == 0.0 {
                        write!(h, "<td>{v}</td>")
                    } else {
                        write!(h, "<td>{v:.4}</td>")
                    };
                }
                let _ = writeln!(h, "</tr>");
            }
            let _ = writeln!(h, "</table>");
        }
        None => {
            let _ = writeln!(h, "<p class=\"note\">No training history (see notes).</p>");
        }
    }

    let e = &m.errors;
    let _ = writeln!(
        h,
        "<h2>Most confident errors ({})</h2><p>{} misclassified, {} shown, lowest probability of the true class first.</p>\n{}",
        e.split,
        e.total,
        e.shown.len(),
        img(p.errors_png, "most confidently wrong images")
    );
    if !e.shown.is_empty() {
        let _ = writeln!(
            h,
            "<table><tr><th class=\"l\">image</th><th class=\"l\">true</th><th class=\"l\">predicted</th><th>p(true)</th><th class=\"l\">probabilities</th><th class=\"l\">image problem</th></tr>"
        );
        for s in &e.shown {
            let probs: Vec<String> = s.probabilities.iter().map(|p| format!("{p:.4}")).collect();
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.4}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(&s.path),
                esc(&m.classes[s.label as usize]),
                esc(&m.classes[s.predicted as usize]),
                s.p_true,
                probs.join(", "),
                esc(s.image_error.as_deref().unwrap_or(""))
            );
        }
        let _ = writeln!(h, "</table>");
    }

    let _ = writeln!(h, "<h2>Configuration</h2>");
    match p.config {
        Some(cfg) => {
            let text = serde_json::to_string_pretty(cfg).expect("JSON value serialises");
            let _ = writeln!(h, "<pre>{}</pre>", esc(&text));
        }
        None => {
            let _ = writeln!(h, "<p class=\"note\">No configuration (see notes).</p>");
        }
    }
    if !m.notes.is_empty() {
        let _ = writeln!(h, "<h2>Notes</h2><ul>");
        for n in &m.notes {
            let _ = writeln!(h, "<li class=\"note\">{}</li>", esc(n));
        }
        let _ = writeln!(h, "</ul>");
    }
    let _ = writeln!(h, "</body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
