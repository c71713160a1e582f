//! `confusion.png`: one confusion matrix per split, side by side. Cells are shaded by the
//! share of their row (the true class), so a dark diagonal means high recall.

use image::{Rgb, RgbImage};
use plotters::prelude::*;

use crate::draw::{self, DrawResult};
use crate::metrics::SplitMetrics;

const MARGIN: u32 = 16;
const TITLE_H: u32 = 30;
const HEADER_H: u32 = 24;
const FOOTER_H: u32 = 24;
const LABEL_FONT: u32 = 14;
const CELL_FONT: u32 = 13;
const DARK: (u8, u8, u8) = (33, 102, 172);

/// Side of one cell: large for few classes, at least big enough for a count and a percent.
fn cell_size(classes: usize) -> u32 {
    (400 / classes.max(1) as u32).clamp(48, 96)
}

/// Renders the matrices of `splits` (all with the same `classes`).
pub fn render(classes: &[String], splits: &[SplitMetrics]) -> DrawResult<RgbImage> {
    let c = classes.len() as u32;
    let cell = cell_size(classes.len());
    let label_style = draw::font(LABEL_FONT, BLACK);
    // Column headers are class names when every name fits its cell, else class indices
    // (and the row labels then carry the index too).
    let by_index = classes
        .iter()
        .any(|n| draw::text_width(n, &label_style) + 6 > cell);
    let row_labels: Vec<String> = classes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if by_index {
                format!("{i}: {n}")
            } else {
                n.clone()
            }
        })
        .collect();
    let label_w = row_labels
        .iter()
        .map(|l| draw::text_width(l, &label_style))
        .max()
        .unwrap_or(0)
        .max(40)
        + 12;
    let panel_w = (label_w + c * cell).max(260) + 2 * MARGIN;
    let panel_h = TITLE_H + HEADER_H + c * cell + FOOTER_H + 2 * MARGIN;
    let mut img = RgbImage::from_pixel(
        panel_w * splits.len().max(1) as u32,
        panel_h,
        Rgb([255, 255, 255]),
    );
    draw::paint(&mut img, |root| {
        for (s, m) in splits.iter().enumerate() {
            let x0 = (s as u32 * panel_w + MARGIN) as i32;
            let y0 = MARGIN as i32;
            let title = format!("{}: n = {}, accuracy {:.4}", m.split, m.count, m.accuracy);
            draw::text_left(
                root,
                &title,
                (x0, y0 + TITLE_H as i32 / 2),
                &draw::font(17, BLACK),
            )?;
            let gx = x0 + label_w as i32;
            let gy = y0 + (TITLE_H + HEADER_H) as i32;
            for (j, name) in classes.iter().enumerate() {
                let head = if by_index {
                    j.to_string()
                } else {
                    name.clone()
                };
                let cx = gx + (j as u32 * cell + cell / 2) as i32;
                draw::text_centered(root, &head, (cx, gy - HEADER_H as i32 / 2), &label_style)?;
            }
            for (i, row) in m.confusion.iter().enumerate() {
                let cy = gy + (i as u32 * cell) as i32;
                draw::text_left(
                    root,
                    &row_labels[i],
                    (x0, cy + cell as i32 / 2),
                    &label_style,
                )?;
                let total: usize = row.iter().sum();
                for (j, &count) in row.iter().enumerate() {
                    let share = if total == 0 {
                        0.0
                    } else {
                        count as f64 / total as f64
                    };
                    let shade =
                        |dark: u8| (255.0 - share * (255.0 - f64::from(dark))).round() as u8;
                    let fill = RGBColor(shade(DARK.0), shade(DARK.1), shade(DARK.2));
                    let cx = gx + (j as u32 * cell) as i32;
                    let rect = [(cx, cy), (cx + cell as i32, cy + cell as i32)];
                    root.draw(&Rectangle::new(rect, fill.filled()))
                        .map_err(|e| e.to_string())?;
                    root.draw(&Rectangle::new(rect, RGBColor(160, 160, 160)))
                        .map_err(|e| e.to_string())?;
                    let ink = if share > 0.5 { WHITE } else { BLACK };
                    let mid = (cx + cell as i32 / 2, cy + cell as i32 / 2);
                    let style = draw::font(CELL_FONT, ink);
                    draw::text_centered(root, &count.to_string(), (mid.0, mid.1 - 8), &style)?;
                    draw::text_centered(
                        root,
                        &format!("{:.0}%", share * 100.0),
                        (mid.0, mid.1 + 9),
                        &style,
                    )?;
                }
            }
            let fy = gy + (c * cell + FOOTER_H / 2) as i32;
            draw::text_left(
                root,
                "rows: true class, columns: predicted",
                (x0, fy),
                &draw::font(12, RGBColor(90, 90, 90)),
            )?;
        }
        Ok(())
    })?;
    Ok(img)
}
