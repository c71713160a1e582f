//! `errors.png`: a contact sheet of misclassified images, most confident mistakes first.
//!
//! Layout: a header line, then a grid of `ceil(sqrt(n))` columns. Each cell is a
//! [`TILE`]-pixel square thumbnail (aspect kept, small images upscaled with nearest
//! neighbour so pixels stay visible) above a three-line caption: file name, true and
//! predicted class, and the probability the model gave the true class. An image that
//! cannot be loaded gets a grey tile that says why.

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use plotters::prelude::*;

use crate::draw::{self, DrawResult};

/// Side of a thumbnail in pixels.
pub const TILE: u32 = 150;
const PAD: u32 = 8;
const CAPTION_H: u32 = 52;
const HEADER_H: u32 = 36;
const CELL_W: u32 = TILE + 2 * PAD;
const CELL_H: u32 = TILE + CAPTION_H + PAD;
const EMPTY_W: u32 = 520;

/// One misclassified image on the sheet.
#[derive(Debug)]
pub struct SheetItem {
    pub name: String,
    pub true_class: String,
    pub predicted_class: String,
    /// Probability the model gave the true class.
    pub p_true: f32,
    /// The decoded image, or why it could not be loaded.
    pub image: Result<RgbImage, String>,
}

/// Size in pixels of a sheet with `n` tiles (with no tiles, a one-line notice).
pub fn sheet_size(n: usize) -> (u32, u32) {
    if n == 0 {
        return (EMPTY_W, HEADER_H + PAD);
    }
    let (cols, rows) = grid(n);
    (cols * CELL_W + 2 * PAD, HEADER_H + rows * CELL_H + PAD)
}

fn grid(n: usize) -> (u32, u32) {
    let cols = (n as f64).sqrt().ceil() as u32;
    (cols, (n as u32).div_ceil(cols))
}

/// Fits `img` into a [`TILE`] square on a light background, keeping its aspect ratio.
pub fn thumbnail(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut tile = RgbImage::from_pixel(TILE, TILE, Rgb([240, 240, 240]));
    if w == 0 || h == 0 {
        return tile;
    }
    let scale = f64::min(
        f64::from(TILE) / f64::from(w),
        f64::from(TILE) / f64::from(h),
    );
    let tw = ((f64::from(w) * scale).round() as u32).clamp(1, TILE);
    let th = ((f64::from(h) * scale).round() as u32).clamp(1, TILE);
    let filter = if scale >= 1.0 {
        FilterType::Nearest
    } else {
        FilterType::Triangle
    };
    let small = imageops::resize(img, tw, th, filter);
    imageops::overlay(
        &mut tile,
        &small,
        i64::from((TILE - tw) / 2),
        i64::from((TILE - th) / 2),
    );
    tile
}

/// Renders the sheet; `header` is the line on top (what split, how many errors).
pub fn render(header: &str, items: &[SheetItem]) -> DrawResult<RgbImage> {
    let (w, h) = sheet_size(items.len());
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let (cols, _) = if items.is_empty() {
        (1, 0)
    } else {
        grid(items.len())
    };
    let placeholder = Rgb([190, 190, 190]);
    for (k, item) in items.iter().enumerate() {
        let (x, y) = cell_origin(k as u32, cols);
        let tile = match &item.image {
            Ok(picture) => thumbnail(picture),
            Err(_) => RgbImage::from_pixel(TILE, TILE, placeholder),
        };
        imageops::overlay(&mut img, &tile, i64::from(x + PAD), i64::from(y));
    }
    draw::paint(&mut img, |root| {
        let header_style = draw::font(17, BLACK);
        let header = draw::fit(header, &header_style, w - 2 * PAD);
        draw::text_left(
            root,
            &header,
            (PAD as i32, HEADER_H as i32 / 2),
            &header_style,
        )?;
        let caption = draw::font(13, BLACK);
        let red = draw::font(13, RGBColor(178, 24, 43));
        for (k, item) in items.iter().enumerate() {
            let (x, y) = cell_origin(k as u32, cols);
            let left = (x + PAD) as i32;
            if let Err(reason) = &item.image {
                let small = draw::font(11, BLACK);
                let mut lines = vec!["image unavailable:".to_string()];
                lines.extend(draw::wrap(reason, &small, TILE - 8));
                for (i, line) in lines.iter().take(9).enumerate() {
                    draw::text_left(
                        root,
                        line,
                        (left + 4, y as i32 + 12 + 14 * i as i32),
                        &small,
                    )?;
                }
            }
            let cy = (y + TILE) as i32 + 10;
            let name = draw::fit(&item.name, &caption, TILE);
            draw::text_left(root, &name, (left, cy), &caption)?;
            let classes = format!("true {}, pred {}", item.true_class, item.predicted_class);
            let classes = draw::fit(&classes, &caption, TILE);
            draw::text_left(root, &classes, (left, cy + 16), &caption)?;
            let p = format!("p(true) = {:.4}", item.p_true);
            draw::text_left(root, &p, (left, cy + 32), &red)?;
        }
        Ok(())
    })?;
    Ok(img)
}

/// Top-left corner of cell `k` (its thumbnail's row starts here).
fn cell_origin(k: u32, cols: u32) -> (u32, u32) {
    (PAD + (k % cols) * CELL_W, HEADER_H + (k / cols) * CELL_H)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_upscale_small_images_with_nearest_and_keep_aspect() {
        // 2x1 image: left black, right white -> 150x75 band, hard edge in the middle.
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(1, 0, Rgb([255, 255, 255]));
        let t = thumbnail(&img);
        assert_eq!(t.dimensions(), (TILE, TILE));
        let mid = TILE / 2;
        assert_eq!(t.get_pixel(74, mid), &Rgb([0, 0, 0]));
        assert_eq!(t.get_pixel(75, mid), &Rgb([255, 255, 255]));
        // Above the 75-pixel band: background.
        assert_eq!(t.get_pixel(10, 10), &Rgb([240, 240, 240]));
    }

    #[test]
    fn grid_is_near_square() {
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(3), (2, 2));
        assert_eq!(grid(16), (4, 4));
        assert_eq!(grid(17), (5, 4));
    }
}
