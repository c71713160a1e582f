//! The preview's contact sheet: an image's views side by side.

use image::{Rgb, RgbImage};

const GAP: u32 = 6;
const BACKGROUND: Rgb<u8> = Rgb([40, 40, 40]);
/// Frame around view 0, the unaugmented image, so it stands out from its views.
const FRAME: Rgb<u8> = Rgb([255, 170, 0]);

/// An HWC RGB `f32` image (values 0..255; clamped, rounded) as 8-bit RGB.
pub fn to_rgb8(image: &[f32], width: u32, height: u32) -> RgbImage {
    assert_eq!(
        image.len(),
        width as usize * height as usize * 3,
        "not a {width}x{height} RGB image"
    );
    let bytes = image
        .iter()
        .map(|v| v.clamp(0.0, 255.0).round() as u8)
        .collect();
    RgbImage::from_raw(width, height, bytes).expect("length checked")
}

/// Lays out `views` (each `size` x `size`, view 0 first) in a grid of `ceil(sqrt(n))`
/// columns, row by row, `GAP` pixels apart; view 0 gets an orange frame.
///
/// # Panics
/// If `views` is empty or a view is not `size` x `size`.
pub fn contact_sheet(views: &[RgbImage], size: u32) -> RgbImage {
    assert!(!views.is_empty(), "no views to lay out");
    let n = views.len() as u32;
    let cols = (f64::from(n).sqrt().ceil() as u32).max(1);
    let rows = n.div_ceil(cols);
    let cell = size + GAP;
    let mut sheet = RgbImage::from_pixel(cols * cell + GAP, rows * cell + GAP, BACKGROUND);
    for (i, view) in views.iter().enumerate() {
        assert_eq!(
            view.dimensions(),
            (size, size),
            "view {i} is not {size}x{size}"
        );
        let (x0, y0) = (
            GAP + (i as u32 % cols) * cell,
            GAP + (i as u32 / cols) * cell,
        );
        if i == 0 {
            let f = GAP / 2;
            for y in y0 - f..y0 + size + f {
                for x in x0 - f..x0 + size + f {
                    sheet.put_pixel(x, y, FRAME);
                }
            }
        }
        image::imageops::replace(&mut sheet, view, i64::from(x0), i64::from(y0));
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_views_row_by_row() {
        let views: Vec<RgbImage> = (0..5u8)
            .map(|i| RgbImage::from_pixel(4, 4, Rgb([i * 50, 0, 0])))
            .collect();
        let sheet = contact_sheet(&views, 4);
        // 5 views: 3 columns, 2 rows.
        assert_eq!(sheet.dimensions(), (3 * 10 + 6, 2 * 10 + 6));
        assert_eq!(sheet.get_pixel(6, 6), &Rgb([0, 0, 0])); // view 0
        assert_eq!(sheet.get_pixel(4, 4), &FRAME);
        assert_eq!(sheet.get_pixel(16, 6), &Rgb([50, 0, 0])); // view 1
        assert_eq!(sheet.get_pixel(16, 16), &Rgb([200, 0, 0])); // view 4: row 1, col 1
        assert_eq!(sheet.get_pixel(26, 16), &BACKGROUND); // empty cell
    }

    #[test]
    fn to_rgb8_clamps_and_rounds() {
        let img = to_rgb8(&[-3.0, 0.49, 0.5, 254.6, 300.0, 7.0], 2, 1);
        assert_eq!(img.as_raw(), &vec![0, 0, 1, 255, 255, 7]);
    }
}
