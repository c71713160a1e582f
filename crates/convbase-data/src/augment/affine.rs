//! Applying one transform as Keras does: `apply_affine_transform` (matrix composition and
//! `transform_matrix_offset_center`), one `scipy.ndimage.affine_transform` per channel, then
//! the flips of `ImageDataGenerator.apply_transform`.
//!
//! The sampling reproduces SciPy's `NI_GeometricTransform` (scipy/ndimage/src/
//! ni_interpolation.c) for spline order 1 (bilinear) and 0 (nearest): the same coordinate
//! arithmetic in double precision, its `map_coordinate` for the boundary modes Keras passes
//! (`nearest`, `constant`, `reflect`, `wrap`, with SciPy's meanings, see [`Fill`]), the
//! mirrored indices it uses next to an edge, and its weights `w0 = 1 - f`, `w1 = 1 - w0`.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

/// The parameters of one transform, as Keras' `apply_transform` receives them from
/// `get_random_transform`. Which image axis `tx`, `ty`, `zx` and `zy` act on depends on the
/// [`Geometry`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TransformParams {
    /// Rotation angle in degrees.
    pub theta: f64,
    /// Shift in pixels along the matrix's first coordinate. Keras draws it from
    /// `height_shift_range` times the image height.
    pub tx: f64,
    /// Shift in pixels along the matrix's second coordinate. Keras draws it from
    /// `width_shift_range` times the image width.
    pub ty: f64,
    /// Shear angle in degrees (already converted when the policy gives radians).
    pub shear: f64,
    /// Zoom factor along the matrix's first coordinate (> 1 shows less of the image).
    pub zx: f64,
    /// Zoom factor along the matrix's second coordinate.
    pub zy: f64,
    /// Mirror left-right (after the affine part).
    pub flip_horizontal: bool,
    /// Mirror top-bottom (after the affine part and the horizontal flip).
    pub flip_vertical: bool,
}

impl TransformParams {
    /// No change: what view 0 gets.
    pub const IDENTITY: TransformParams = TransformParams {
        theta: 0.0,
        tx: 0.0,
        ty: 0.0,
        shear: 0.0,
        zx: 1.0,
        zy: 1.0,
        flip_horizontal: false,
        flip_vertical: false,
    };

    /// True when applying these parameters returns the image unchanged.
    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }
}

/// Which Keras generation's matrix conventions to follow. Both compose
/// rotation · shift · shear · zoom and centre the matrix with
/// `transform_matrix_offset_center`; they differ in the centre and the axis order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Geometry {
    /// Keras 3 (`keras.src.legacy.preprocessing.image`): centre `n/2 - 0.5` (the true
    /// centre of the pixel grid) and the matrix read in (x, y) = (column, row) order, so
    /// `tx` and `zx` act on columns, and rotation and shear turn the other way than in
    /// `keras2`. The centre's first coordinate still comes from the height, which only
    /// matters for images that are not square.
    #[default]
    Keras3,
    /// Keras 2.0.8 (the book's) and keras_preprocessing 1.1.2: centre
    /// `n/2 + 0.5` (half a pixel past the true centre, down and right) and the matrix
    /// read in (row, column) order, so `tx` and `zx` act on rows.
    Keras2,
}

/// How pixels between grid points are sampled (SciPy's spline `order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Interpolation {
    /// `order=1`, what Keras passes since keras_preprocessing 1.0.
    #[default]
    Bilinear,
    /// `order=0`, what Keras 2.0.8 (the book's) hard-coded: the grid point at
    /// `floor(x + 0.5)`.
    Nearest,
}

/// What the transform shows where it samples outside the image: Keras' `fill_mode`,
/// passed to SciPy as `mode`, with SciPy's meanings (n = side length).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fill {
    /// `aaaa|abcd|dddd`: the edge pixel repeated.
    #[default]
    Nearest,
    /// The value `cval` beyond the grid's outermost points (coordinates outside
    /// `[0, n - 1]`); no blending with the edge pixels.
    Constant(f64),
    /// `dcba|abcd|dcba`: mirrored about the pixel edge (SciPy `reflect`, not `mirror`).
    Reflect,
    /// SciPy's `wrap` (not `grid-wrap`): periodic with period `n - 1`, the first and the
    /// last pixel landing on the same point, as SciPy documents and Keras gets.
    Wrap,
}

impl Fill {
    pub fn name(self) -> &'static str {
        match self {
            Fill::Nearest => "nearest",
            Fill::Constant(_) => "constant",
            Fill::Reflect => "reflect",
            Fill::Wrap => "wrap",
        }
    }

    /// The fill called `name` (`constant` takes `cval`, the others ignore it).
    pub fn from_name(name: &str, cval: f64) -> Option<Fill> {
        Some(match name {
            "nearest" => Fill::Nearest,
            "constant" => Fill::Constant(cval),
            "reflect" => Fill::Reflect,
            "wrap" => Fill::Wrap,
            _ => return None,
        })
    }
}

impl Geometry {
    pub fn name(self) -> &'static str {
        match self {
            Geometry::Keras3 => "keras3",
            Geometry::Keras2 => "keras2",
        }
    }
}

impl Interpolation {
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Bilinear => "bilinear",
            Interpolation::Nearest => "nearest",
        }
    }
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Interpolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Geometry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keras3" => Ok(Geometry::Keras3),
            "keras2" => Ok(Geometry::Keras2),
            _ => Err(format!(
                "unknown geometry `{s}` (expected keras3 or keras2)"
            )),
        }
    }
}

impl FromStr for Interpolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bilinear" => Ok(Interpolation::Bilinear),
            "nearest" => Ok(Interpolation::Nearest),
            _ => Err(format!(
                "unknown interpolation `{s}` (expected bilinear or nearest)"
            )),
        }
    }
}

/// How a transform is carried out, as opposed to which one ([`TransformParams`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sampling {
    pub geometry: Geometry,
    pub interpolation: Interpolation,
    pub fill: Fill,
}

type M3 = [[f64; 3]; 3];

/// `np.dot` of two 3x3 matrices (sums in index order).
fn dot(a: &M3, b: &M3) -> M3 {
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        }
    }
    r
}

/// `np.deg2rad`.
fn deg2rad(d: f64) -> f64 {
    d * (PI / 180.0)
}

/// Keras' output-to-input map for an image of `h` rows and `w` columns, as the matrix and
/// offset handed to `scipy.ndimage.affine_transform` (input (row, col) = A · (row, col) + b);
/// `None` when Keras skips the resampling because every part is the identity.
fn keras_matrix(p: &TransformParams, h: usize, w: usize, geometry: Geometry) -> Option<M3> {
    let mut m: Option<M3> = None;
    let mut compose = |part: M3| {
        m = Some(match m {
            None => part,
            Some(m) => dot(&m, &part),
        });
    };
    if p.theta != 0.0 {
        let t = deg2rad(p.theta);
        compose([
            [t.cos(), -t.sin(), 0.0],
            [t.sin(), t.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ]);
    }
    if p.tx != 0.0 || p.ty != 0.0 {
        compose([[1.0, 0.0, p.tx], [0.0, 1.0, p.ty], [0.0, 0.0, 1.0]]);
    }
    if p.shear != 0.0 {
        let s = deg2rad(p.shear);
        compose([[1.0, -s.sin(), 0.0], [0.0, s.cos(), 0.0], [0.0, 0.0, 1.0]]);
    }
    if p.zx != 1.0 || p.zy != 1.0 {
        compose([[p.zx, 0.0, 0.0], [0.0, p.zy, 0.0], [0.0, 0.0, 1.0]]);
    }
    let m = m?;
    // transform_matrix_offset_center(matrix, h, w)
    let half = match geometry {
        Geometry::Keras3 => -0.5,
        Geometry::Keras2 => 0.5,
    };
    let o_x = h as f64 / 2.0 + half;
    let o_y = w as f64 / 2.0 + half;
    let offset = [[1.0, 0.0, o_x], [0.0, 1.0, o_y], [0.0, 0.0, 1.0]];
    let reset = [[1.0, 0.0, -o_x], [0.0, 1.0, -o_y], [0.0, 0.0, 1.0]];
    let mut t = dot(&dot(&offset, &m), &reset);
    if geometry == Geometry::Keras3 {
        // Keras 3 swaps x and y (M' = P M P) because col_axis > row_axis.
        for row in &mut t {
            row.swap(0, 1);
        }
        t.swap(0, 1);
    }
    Some(t)
}

/// SciPy's boundary modes that this sampler needs: the four Keras passes, plus `mirror`,
/// which SciPy uses for the indices next to an edge in `constant` and `wrap` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Nearest,
    Constant,
    Reflect,
    Wrap,
    Mirror,
}

/// SciPy's `map_coordinate`: folds a coordinate outside `[0, len - 1]` back in, or returns
/// -1 in `constant` mode. Integer and floating steps as in the C code.
fn map_coordinate(mut x: f64, len: usize, mode: Mode) -> f64 {
    let n = len as f64;
    if x < 0.0 {
        match mode {
            Mode::Mirror if len <= 1 => x = 0.0,
            Mode::Mirror => {
                let sz2 = (2 * len - 2) as f64;
                x += sz2 * (-x / sz2).trunc();
                x = if x <= 1.0 - n { x + sz2 } else { -x };
            }
            Mode::Reflect if len <= 1 => x = 0.0,
            Mode::Reflect => {
                let sz2 = (2 * len) as f64;
                if x < -sz2 {
                    x += sz2 * (-x / sz2).trunc();
                }
                // SciPy's guard against -x - 1 rounding to -1 for tiny negative x.
                x = if x < -n {
                    x + sz2
                } else {
                    (if x > -1e-15 { 1e-15 } else { -x }) - 1.0
                };
            }
            Mode::Wrap if len <= 1 => x = 0.0,
            Mode::Wrap => {
                let sz = (len - 1) as f64;
                x += sz * ((-x / sz).trunc() + 1.0);
            }
            Mode::Nearest => x = 0.0,
            Mode::Constant => x = -1.0,
        }
    } else if x > n - 1.0 {
        match mode {
            Mode::Mirror if len <= 1 => x = 0.0,
            Mode::Mirror => {
                let sz2 = (2 * len - 2) as f64;
                x -= sz2 * (x / sz2).trunc();
                if x >= n {
                    x = sz2 - x;
                }
            }
            Mode::Reflect if len <= 1 => x = 0.0,
            Mode::Reflect => {
                let sz2 = (2 * len) as f64;
                x -= sz2 * (x / sz2).trunc();
                if x >= n {
                    x = sz2 - x - 1.0;
                }
            }
            Mode::Wrap if len <= 1 => x = 0.0,
            Mode::Wrap => {
                let sz = (len - 1) as f64;
                x -= sz * (x / sz).trunc();
            }
            Mode::Nearest => x = n - 1.0,
            Mode::Constant => x = -1.0,
        }
    }
    x
}

/// Where one output coordinate reads along one axis: up to two input indices with their
/// weights (one index with weight 1 for nearest sampling), or nowhere (the fill value).
#[derive(Debug, Clone, Copy)]
struct Tap {
    idx: [usize; 2],
    w: [f64; 2],
    taps: usize,
}

fn tap(coord: f64, len: usize, mode: Mode, interpolation: Interpolation) -> Option<Tap> {
    let c = if mode == Mode::Nearest {
        coord
    } else {
        map_coordinate(coord, len, mode)
    };
    if !(c > -1.0 || mode == Mode::Nearest) {
        return None;
    }
    // SciPy's `_get_spline_boundary_mode`: indices past an edge in constant or wrap mode
    // are mirrored.
    let edge_mode = match mode {
        Mode::Constant | Mode::Wrap => Mode::Mirror,
        m => m,
    };
    let index = |i: i64| -> usize {
        if i < 0 || i >= len as i64 {
            map_coordinate(i as f64, len, edge_mode) as usize
        } else {
            i as usize
        }
    };
    Some(match interpolation {
        Interpolation::Bilinear => {
            let floor = c.floor();
            let start = floor as i64;
            let f = c - floor;
            let w0 = 1.0 - f;
            Tap {
                idx: [index(start), index(start + 1)],
                w: [w0, 1.0 - w0],
                taps: 2,
            }
        }
        Interpolation::Nearest => Tap {
            idx: [index((c + 0.5).floor() as i64), 0],
            w: [1.0, 0.0],
            taps: 1,
        },
    })
}

/// Applies `params` to an HWC image of `height` x `width` pixels (any number of channels,
/// `f32`, e.g. the 0..255 RGB of [`crate::load_for_network`]) as Keras'
/// `ImageDataGenerator.apply_transform` does with `sampling`'s settings, returning a new
/// image of the same shape. Parameters that are all the identity return a copy, as Keras
/// skips the resampling then.
///
/// # Panics
/// If the image is empty or its length is not a multiple of `height * width`.
pub fn apply(
    image: &[f32],
    height: usize,
    width: usize,
    params: &TransformParams,
    sampling: &Sampling,
) -> Vec<f32> {
    assert!(
        height > 0 && width > 0 && !image.is_empty() && image.len().is_multiple_of(height * width),
        "image of {} values is not {height}x{width} pixels",
        image.len()
    );
    let channels = image.len() / (height * width);
    let mut out = match keras_matrix(params, height, width, sampling.geometry) {
        None => image.to_vec(),
        Some(t) => resample(image, height, width, channels, &t, sampling),
    };
    let row = width * channels;
    if params.flip_horizontal {
        for r in out.chunks_exact_mut(row) {
            for c in 0..width / 2 {
                for k in 0..channels {
                    r.swap(c * channels + k, (width - 1 - c) * channels + k);
                }
            }
        }
    }
    if params.flip_vertical {
        for r in 0..height / 2 {
            let (top, bottom) = out.split_at_mut((height - 1 - r) * row);
            top[r * row..(r + 1) * row].swap_with_slice(&mut bottom[..row]);
        }
    }
    out
}

fn resample(
    image: &[f32],
    height: usize,
    width: usize,
    channels: usize,
    t: &M3,
    sampling: &Sampling,
) -> Vec<f32> {
    let (mode, cval) = match sampling.fill {
        Fill::Nearest => (Mode::Nearest, 0.0),
        Fill::Constant(v) => (Mode::Constant, v),
        Fill::Reflect => (Mode::Reflect, 0.0),
        Fill::Wrap => (Mode::Wrap, 0.0),
    };
    let mut out = Vec::with_capacity(image.len());
    for r in 0..height {
        let (rf, shift) = (r as f64, [t[0][2], t[1][2]]);
        for c in 0..width {
            let cf = c as f64;
            // NI_GeometricTransform: tmp = shift; tmp += coord0 * m0; tmp += coord1 * m1.
            let in_r = shift[0] + rf * t[0][0] + cf * t[0][1];
            let in_c = shift[1] + rf * t[1][0] + cf * t[1][1];
            let taps = tap(in_r, height, mode, sampling.interpolation).zip(tap(
                in_c,
                width,
                mode,
                sampling.interpolation,
            ));
            for k in 0..channels {
                let value = match taps {
                    None => cval,
                    Some((tr, tc)) => {
                        let mut acc = 0.0f64;
                        for i in 0..tr.taps {
                            for j in 0..tc.taps {
                                let v = image[(tr.idx[i] * width + tc.idx[j]) * channels + k];
                                acc += f64::from(v) * tr.w[i] * tc.w[j];
                            }
                        }
                        acc
                    }
                };
                out.push(value as f32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keras' rotation by +90 degrees in each geometry, on a 3x3 image: where the pixel at
    /// (row 0, col 1) lands tells the direction.
    #[test]
    fn rotation_direction_per_geometry() {
        let img: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let p = TransformParams {
            theta: 90.0,
            ..TransformParams::IDENTITY
        };
        let k3 = apply(&img, 3, 3, &p, &Sampling::default());
        // Keras 3: out(r, c) = in(c, 2 - r) up to rounding: counter-clockwise on screen.
        let expect: Vec<f32> = (0..3)
            .flat_map(|r| (0..3).map(move |c| (c * 3 + (2 - r)) as f32))
            .collect();
        for (a, b) in k3.iter().zip(&expect) {
            assert!((a - b).abs() < 1e-4, "{k3:?} vs {expect:?}");
        }
        // Keras 2 turns the other way and is centred half a pixel off.
        let k2 = apply(
            &img,
            3,
            3,
            &p,
            &Sampling {
                geometry: Geometry::Keras2,
                ..Sampling::default()
            },
        );
        assert_ne!(k2, k3);
    }

    #[test]
    fn flips_and_identity() {
        let img: Vec<f32> = (0..2 * 3 * 2).map(|v| v as f32).collect(); // 2x3, 2 channels
        assert_eq!(
            apply(&img, 2, 3, &TransformParams::IDENTITY, &Sampling::default()),
            img
        );
        let h = TransformParams {
            flip_horizontal: true,
            ..TransformParams::IDENTITY
        };
        assert_eq!(
            apply(&img, 2, 3, &h, &Sampling::default()),
            vec![4., 5., 2., 3., 0., 1., 10., 11., 8., 9., 6., 7.]
        );
        let v = TransformParams {
            flip_vertical: true,
            ..TransformParams::IDENTITY
        };
        assert_eq!(
            apply(&img, 2, 3, &v, &Sampling::default()),
            vec![6., 7., 8., 9., 10., 11., 0., 1., 2., 3., 4., 5.]
        );
    }

    #[test]
    fn scipy_boundary_modes_fold_as_documented() {
        // n = 4: reflect `dcba|abcd|dcba`, mirror `dcb|abcd|cba`, wrap period 3.
        assert_eq!(map_coordinate(-1.0, 4, Mode::Reflect), 0.0);
        assert_eq!(map_coordinate(-2.0, 4, Mode::Reflect), 1.0);
        assert_eq!(map_coordinate(4.0, 4, Mode::Reflect), 3.0);
        assert_eq!(map_coordinate(-1.0, 4, Mode::Mirror), 1.0);
        assert_eq!(map_coordinate(4.0, 4, Mode::Mirror), 2.0);
        assert_eq!(map_coordinate(-1.0, 4, Mode::Wrap), 2.0);
        assert_eq!(map_coordinate(3.5, 4, Mode::Wrap), 0.5);
        assert_eq!(map_coordinate(3.5, 4, Mode::Constant), -1.0);
        assert_eq!(map_coordinate(3.0, 4, Mode::Constant), 3.0);
        assert_eq!(map_coordinate(-7.0, 4, Mode::Nearest), 0.0);
    }

    #[test]
    #[should_panic(expected = "is not 2x2 pixels")]
    fn wrong_shape_panics() {
        apply(
            &[0.0; 5],
            2,
            2,
            &TransformParams::IDENTITY,
            &Sampling::default(),
        );
    }
}
