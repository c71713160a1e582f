//! Plotting support shared by the heads and the report.

use std::io::Write;
use std::path::Path;
use std::sync::Once;

use convbase_format::write_atomically;

use crate::error::TrainError;
use crate::fit::EpochMetrics;

/// The font every convbase plot uses, registered with plotters once per process.
///
/// Plots must render the same on machines without system fonts (CI has none), so the font
/// is compiled in (Ubuntu Light, from `epaint_default_fonts`).
pub const FONT_FAMILY: &str = "sans-serif";

/// Registers [`FONT_FAMILY`] with plotters. Safe to call many times.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [
            plotters::style::FontStyle::Normal,
            plotters::style::FontStyle::Bold,
            plotters::style::FontStyle::Italic,
            plotters::style::FontStyle::Oblique,
        ] {
            plotters::style::register_font(FONT_FAMILY, style, epaint_default_fonts::UBUNTU_LIGHT)
                .unwrap_or_else(|_| panic!("embedded font is valid"));
        }
    });
}

/// Size of `curves.png`: two panels side by side.
pub const CURVES_SIZE: (u32, u32) = (1200, 500);

/// Draws the seed's two plots side by side into an RGB buffer of [`CURVES_SIZE`]:
/// training and validation accuracy (left) and loss (right) per epoch, training as dots
/// and validation as a line.
pub fn curves_rgb(history: &[EpochMetrics]) -> Result<Vec<u8>, String> {
    use plotters::prelude::*;
    register_font();
    let (w, h) = CURVES_SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, 2));
        type Pick = fn(&EpochMetrics) -> (f32, Option<f32>);
        // Accuracy rises and loss falls: keep each legend off the training dots.
        let specs: [(&str, &str, Pick, SeriesLabelPosition); 2] = [
            (
                "Training and validation accuracy",
                "accuracy",
                |m| (m.acc, m.val_acc),
                SeriesLabelPosition::LowerRight,
            ),
            (
                "Training and validation loss",
                "loss",
                |m| (m.loss, m.val_loss),
                SeriesLabelPosition::UpperRight,
            ),
        ];
        for (area, (title, y_label, pick, legend)) in panels.iter().zip(specs) {
            let train: Vec<(f64, f64)> = history
                .iter()
                .map(|m| (m.epoch as f64, pick(m).0 as f64))
                .collect();
            let val: Vec<(f64, f64)> = history
                .iter()
                .filter_map(|m| pick(m).1.map(|v| (m.epoch as f64, v as f64)))
                .collect();
            let ys = train
                .iter()
                .chain(&val)
                .map(|p| p.1)
                .filter(|v| v.is_finite());
            let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.05).max(1e-3);
            let last = history.len().max(2) as f64;
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT_FAMILY, 22))
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.5..last + 0.5, (lo - pad)..(hi + pad))
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(y_label)
                .label_style((FONT_FAMILY, 14))
                .draw()
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(train.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
                .map_err(|e| e.to_string())?
                .label("training")
                .legend(|(x, y)| Circle::new((x + 10, y), 4, BLUE.filled()));
            if !val.is_empty() {
                chart
                    .draw_series(LineSeries::new(val, BLUE.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label("validation")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font((FONT_FAMILY, 14))
                .position(legend)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// Writes `curves.png` atomically.
pub fn write_curves(history: &[EpochMetrics], path: &Path) -> Result<(), TrainError> {
    let bad = |problem: String| TrainError::Output {
        path: path.to_path_buf(),
        problem: format!("cannot draw the curves: {problem}"),
    };
    let rgb = curves_rgb(history).map_err(bad)?;
    let (w, h) = CURVES_SIZE;
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| bad("buffer size".into()))?;
    write_atomically(path, |f| {
        let mut out = std::io::BufWriter::new(f);
        img.write_to(&mut out, image::ImageFormat::Png)
            .map_err(|e| bad(e.to_string()))?;
        out.flush().map_err(|e| TrainError::io(path, e))
    })
}
