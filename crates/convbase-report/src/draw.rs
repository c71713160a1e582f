//! Drawing helpers shared by the confusion matrix and the contact sheet: plotters draws
//! text and shapes straight into an `image::RgbImage`, which is then encoded as PNG.

use image::RgbImage;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use convbase_train::plot::FONT_FAMILY;

/// A plotters error, as text (its type is generic over the backend).
pub(crate) type DrawResult<T = ()> = Result<T, String>;

/// Runs `paint` on a plotters drawing area over `img`'s pixels.
pub(crate) fn paint(
    img: &mut RgbImage,
    paint: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> DrawResult,
) -> DrawResult {
    convbase_train::plot::register_font();
    let (w, h) = img.dimensions();
    let buf: &mut [u8] = img;
    let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
    paint(&root)?;
    root.present().map_err(|e| e.to_string())
}

/// The report's font at `size` pixels in `color`.
pub(crate) fn font(size: u32, color: RGBColor) -> TextStyle<'static> {
    convbase_train::plot::register_font();
    (FONT_FAMILY, size).into_font().color(&color)
}

/// Width of `text` in pixels.
pub(crate) fn text_width(text: &str, style: &TextStyle<'_>) -> u32 {
    style.font.box_size(text).map(|(w, _)| w).unwrap_or(0)
}

/// `text`, shortened with "..." until it fits in `max_px`.
pub(crate) fn fit(text: &str, style: &TextStyle<'_>, max_px: u32) -> String {
    if text_width(text, style) <= max_px {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (0..chars.len()).rev() {
        let s: String = chars[..keep].iter().collect::<String>() + "...";
        if text_width(&s, style) <= max_px {
            return s;
        }
    }
    String::new()
}

/// Splits `text` into lines no wider than `max_px`, breaking at spaces (long words are cut).
pub(crate) fn wrap(text: &str, style: &TextStyle<'_>, max_px: u32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if text_width(&candidate, style) <= max_px {
            line = candidate;
        } else {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            line = fit(word, style, max_px);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws `text` with its left edge at `x` and its middle at `y`.
pub(crate) fn text_left<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    (x, y): (i32, i32),
    style: &TextStyle<'_>,
) -> DrawResult {
    let style = style.pos(Pos::new(HPos::Left, VPos::Center));
    area.draw(&Text::new(text.to_string(), (x, y), style))
        .map_err(|e| e.to_string())
}

/// Draws `text` centred on `(x, y)`.
pub(crate) fn text_centered<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    (x, y): (i32, i32),
    style: &TextStyle<'_>,
) -> DrawResult {
    let style = style.pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(text.to_string(), (x, y), style))
        .map_err(|e| e.to_string())
}

/// Encodes `img` as PNG bytes.
pub(crate) fn png_bytes(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}
