//! Plotting support shared by the heads and the report.

use std::sync::Once;

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
