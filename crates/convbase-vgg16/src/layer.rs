//! Layers of the VGG16 conv base by their Keras names, and global pooling of the output.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;

/// One layer of the conv base, named as in Keras (`block4_pool`, `block5_conv3`, ...).
///
/// Layers are ordered as the network runs them; `Layer as usize` is the position in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Layer {
    Block1Conv1,
    Block1Conv2,
    Block1Pool,
    Block2Conv1,
    Block2Conv2,
    Block2Pool,
    Block3Conv1,
    Block3Conv2,
    Block3Conv3,
    Block3Pool,
    Block4Conv1,
    Block4Conv2,
    Block4Conv3,
    Block4Pool,
    Block5Conv1,
    Block5Conv2,
    Block5Conv3,
    #[default]
    Block5Pool,
}

/// Per layer: Keras name, index in torchvision's `features`, output channels, whether a conv.
const TABLE: [(&str, usize, usize, bool); 18] = [
    ("block1_conv1", 0, 64, true),
    ("block1_conv2", 2, 64, true),
    ("block1_pool", 4, 64, false),
    ("block2_conv1", 5, 128, true),
    ("block2_conv2", 7, 128, true),
    ("block2_pool", 9, 128, false),
    ("block3_conv1", 10, 256, true),
    ("block3_conv2", 12, 256, true),
    ("block3_conv3", 14, 256, true),
    ("block3_pool", 16, 256, false),
    ("block4_conv1", 17, 512, true),
    ("block4_conv2", 19, 512, true),
    ("block4_conv3", 21, 512, true),
    ("block4_pool", 23, 512, false),
    ("block5_conv1", 24, 512, true),
    ("block5_conv2", 26, 512, true),
    ("block5_conv3", 28, 512, true),
    ("block5_pool", 30, 512, false),
];

impl Layer {
    /// Every layer in the order the network runs them.
    pub const ALL: [Layer; 18] = [
        Layer::Block1Conv1,
        Layer::Block1Conv2,
        Layer::Block1Pool,
        Layer::Block2Conv1,
        Layer::Block2Conv2,
        Layer::Block2Pool,
        Layer::Block3Conv1,
        Layer::Block3Conv2,
        Layer::Block3Conv3,
        Layer::Block3Pool,
        Layer::Block4Conv1,
        Layer::Block4Conv2,
        Layer::Block4Conv3,
        Layer::Block4Pool,
        Layer::Block5Conv1,
        Layer::Block5Conv2,
        Layer::Block5Conv3,
        Layer::Block5Pool,
    ];

    /// The 13 conv layers, in order.
    pub fn convs() -> impl Iterator<Item = Layer> {
        Self::ALL.into_iter().filter(|l| l.is_conv())
    }

    /// Keras name, e.g. `block5_pool`.
    pub fn keras_name(self) -> &'static str {
        TABLE[self as usize].0
    }

    /// Index of this layer in torchvision's `features` sequence (conv weights live at
    /// `features.{index}.weight`).
    pub fn torch_index(self) -> usize {
        TABLE[self as usize].1
    }

    /// Channels this layer outputs.
    pub fn channels(self) -> usize {
        TABLE[self as usize].2
    }

    /// Channels this layer takes (3 for the first conv).
    pub fn in_channels(self) -> usize {
        match self as usize {
            0 => 3,
            i => TABLE[i - 1].2,
        }
    }

    /// True for a 3x3 conv + ReLU, false for a 2x2 max-pool.
    pub fn is_conv(self) -> bool {
        TABLE[self as usize].3
    }

    /// Spatial size this layer outputs for a square input of `size` px (pools halve, floor).
    pub fn spatial_size(self, size: usize) -> usize {
        Self::ALL[..=self as usize]
            .iter()
            .filter(|l| !l.is_conv())
            .fold(size, |s, _| s / 2)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keras_name())
    }
}

impl FromStr for Layer {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.keras_name() == s)
            .ok_or_else(|| ParseError {
                what: "layer",
                got: s.to_string(),
                expected: "block1_conv1..block5_conv3, block1_pool..block5_pool".into(),
            })
    }
}

/// Global pooling of the output over its spatial axes; `None` keeps the (C, h, w) map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum GlobalPool {
    #[default]
    None,
    Avg,
    Max,
}

impl fmt::Display for GlobalPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Avg => "avg",
            Self::Max => "max",
        })
    }
}

impl FromStr for GlobalPool {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "avg" => Ok(Self::Avg),
            "max" => Ok(Self::Max),
            _ => Err(ParseError {
                what: "global pooling",
                got: s.to_string(),
                expected: "none, avg, max".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sizes_follow_the_seed() {
        for l in Layer::ALL {
            assert_eq!(l.keras_name().parse::<Layer>().unwrap(), l);
        }
        assert!("block6_pool".parse::<Layer>().is_err());
        assert_eq!(Layer::default(), Layer::Block5Pool);
        assert_eq!(Layer::Block5Pool.spatial_size(150), 4);
        assert_eq!(Layer::Block4Pool.spatial_size(150), 9);
        assert_eq!(Layer::Block3Conv3.spatial_size(150), 37);
        assert_eq!(Layer::Block5Pool.spatial_size(32), 1);
        let idx: Vec<usize> = Layer::convs().map(Layer::torch_index).collect();
        assert_eq!(idx, [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]);
        assert_eq!(Layer::Block4Conv1.in_channels(), 256);
        assert_eq!("avg".parse::<GlobalPool>().unwrap(), GlobalPool::Avg);
        assert_eq!(GlobalPool::Max.to_string(), "max");
    }
}
