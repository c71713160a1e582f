//! The inference-only CPU path of the conv base: activations stay NHWC, each 3x3 conv is an
//! explicit im2col (filled in parallel, three contiguous copies per row) and one large gemm
//! per chunk with the bias pre-loaded into the destination, so candle's per-layer layout
//! conversions and element-wise write-backs disappear. Same arithmetic (float32, taps in
//! (kh, kw, c) order); the goldens check it like the candle path.

use candle_core::Tensor;
use rayon::prelude::*;

use crate::layer::Layer;

/// Floats one im2col chunk may hold (32 MiB); the rows of a layer are processed in chunks.
const IM2COL_FLOATS: usize = 8 << 20;

/// One conv layer's weights, laid out for the gemm.
#[derive(Debug, Clone)]
pub(crate) struct FastConv {
    /// (9*C, O) row-major; row (kh*3 + kw)*C + c.
    w: Vec<f32>,
    bias: Vec<f32>,
    c: usize,
    o: usize,
}

impl FastConv {
    /// From torchvision's OIHW weight and bias.
    pub fn new(weight: &Tensor, bias: &Tensor) -> candle_core::Result<Self> {
        let (o, c, _, _) = weight.dims4()?;
        let w = weight
            .permute((2, 3, 1, 0))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Self {
            w,
            bias: bias.to_vec1()?,
            c,
            o,
        })
    }
}

/// Runs layers block1_conv1..=`layers.len()-1` on NHWC images.
///
/// # Shapes
/// - `x`: (N, H, W, 3) values, NHWC, preprocessed
/// - returns the NHWC output (N, h, w, C) and its dims
pub(crate) fn forward(
    layers: &[Option<FastConv>],
    mut x: Vec<f32>,
    (n, mut h, mut w): (usize, usize, usize),
) -> (Vec<f32>, [usize; 4]) {
    let mut c = 3;
    for (layer, conv) in Layer::ALL.iter().zip(layers) {
        match conv {
            Some(conv) => {
                debug_assert!(layer.is_conv() && conv.c == c);
                x = conv3x3_relu(conv, &x, n, h, w);
                c = conv.o;
            }
            None => {
                x = max_pool(&x, n, h, w, c);
                (h, w) = (h / 2, w / 2);
            }
        }
    }
    (x, [n, h, w, c])
}

/// 3x3 conv, stride 1, zero padding 1, + bias + ReLU: (N, H, W, C) -> (N, H, W, O).
fn conv3x3_relu(conv: &FastConv, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
    let (c, o) = (conv.c, conv.o);
    let (hp, wp) = (h + 2, w + 2);
    // Zero-padded copy, so every tap is in bounds.
    let mut padded = vec![0f32; n * hp * wp * c];
    padded
        .par_chunks_mut(hp * wp * c)
        .zip(x.par_chunks(h * w * c))
        .for_each(|(p, img)| {
            for y in 0..h {
                let dst = ((y + 1) * wp + 1) * c;
                p[dst..dst + w * c].copy_from_slice(&img[y * w * c..(y + 1) * w * c]);
            }
        });
    let rows = n * h * w;
    let k = 9 * c;
    let mut out = vec![0f32; rows * o];
    out.par_chunks_mut(o)
        .for_each(|r| r.copy_from_slice(&conv.bias));
    let chunk_rows = (IM2COL_FLOATS / k).max(1);
    let mut cols = vec![0f32; chunk_rows.min(rows) * k];
    for r0 in (0..rows).step_by(chunk_rows) {
        let m = chunk_rows.min(rows - r0);
        let cols = &mut cols[..m * k];
        cols.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
            let r = r0 + i;
            let (img, y, x0) = (r / (h * w), (r / w) % h, r % w);
            let base = img * hp * wp * c;
            // Row kh of the window: padded pixels (y+kh, x0..x0+3), 3*C contiguous floats.
            for kh in 0..3 {
                let src = base + ((y + kh) * wp + x0) * c;
                row[kh * 3 * c..(kh + 1) * 3 * c].copy_from_slice(&padded[src..src + 3 * c]);
            }
        });
        let dst = &mut out[r0 * o..(r0 + m) * o];
        // SAFETY: dst is m x o, cols m x k, conv.w k x o, all row-major and in bounds (the
        // slices above have exactly these lengths); no aliasing between them.
        unsafe {
            gemm::gemm(
                m,
                o,
                k,
                dst.as_mut_ptr(),
                1,
                o as isize,
                true,
                cols.as_ptr(),
                1,
                k as isize,
                conv.w.as_ptr(),
                1,
                o as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(rayon::current_num_threads()),
            );
        }
    }
    out.par_iter_mut().for_each(|v| *v = v.max(0.0));
    out
}

/// 2x2 max-pool, stride 2, floor: (N, H, W, C) -> (N, H/2, W/2, C).
fn max_pool(x: &[f32], n: usize, h: usize, w: usize, c: usize) -> Vec<f32> {
    let (h2, w2) = (h / 2, w / 2);
    let mut out = vec![0f32; n * h2 * w2 * c];
    out.par_chunks_mut(w2 * c)
        .enumerate()
        .for_each(|(row, dst)| {
            let (img, y) = (row / h2, row % h2);
            let at = |yy: usize, xx: usize| ((img * h + yy) * w + xx) * c;
            for xo in 0..w2 {
                let (a, b) = (at(2 * y, 2 * xo), at(2 * y + 1, 2 * xo));
                let d = &mut dst[xo * c..(xo + 1) * c];
                for ch in 0..c {
                    d[ch] = x[a + ch]
                        .max(x[a + c + ch])
                        .max(x[b + ch])
                        .max(x[b + c + ch]);
                }
            }
        });
    out
}
