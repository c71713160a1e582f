//! Seeded randomness. candle's CPU RNG cannot be seeded, so every random draw of a run
//! (initial weights, shuffles, views, dropout masks) comes from rand_chacha on the host.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Independent streams of one seed: changing, say, the dropout rate leaves the initial
/// weights and the shuffles of a run as they were.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Init = 1,
    Shuffle = 2,
    Views = 3,
    Dropout = 4,
}

/// The generator of `stream` for `seed`.
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}
