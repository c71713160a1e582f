//! Predicts new images with a conv base and a trained head in one process, one JSON line per image.
