//! What every head shares: optimisers with Keras semantics, the training loop, run
//! directories, curves.

pub mod plot;
