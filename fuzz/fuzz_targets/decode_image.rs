//! Image bytes -> RGB8 or an error (`convbase_data::decode_rgb8`, the loader every stage
//! uses): never a panic, never an image beyond the documented limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: convbase_fuzz::crash_only_on_escaped_panics(), |data: &[u8]| {
    if let Ok(img) = convbase_data::decode_rgb8(data) {
        let (w, h) = img.dimensions();
        assert!(w <= convbase_data::MAX_SIDE && h <= convbase_data::MAX_SIDE);
        assert_eq!(img.as_raw().len(), w as usize * h as usize * 3);
    }
});
