//! Extraction stage: runs the conv base over a manifest into a features file, with a cache that never lies.
