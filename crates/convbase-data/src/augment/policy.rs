//! The augmentation policy: Keras' `ImageDataGenerator` arguments, the draw of one view's
//! parameters, and the policy's two written forms (a short spec for the command line, JSON
//! for the Parquet footer).

use std::fmt;
use std::str::FromStr;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use super::affine::{self, Fill, Geometry, Interpolation, Sampling, TransformParams};

/// The unit of `shear_range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ShearUnit {
    /// Keras since keras_preprocessing 1.0: `shear_range=0.2` means at most 0.2 degrees.
    #[default]
    Degrees,
    /// Keras 2.0.8, the book's: `shear_range=0.2` means at most 0.2 radians (11.5 degrees).
    Radians,
}

impl ShearUnit {
    pub fn name(self) -> &'static str {
        match self {
            ShearUnit::Degrees => "degrees",
            ShearUnit::Radians => "radians",
        }
    }
}

/// Why an augmentation spec or JSON description was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("augmentation policy `{spec}`: {problem}")]
pub struct PolicyError {
    pub spec: String,
    pub problem: String,
}

/// Random augmentation as Keras' `ImageDataGenerator` with the same arguments would do it,
/// drawn deterministically per (seed, image key, view). `Default` is the book's policy
/// (`rotation_range=40`, shifts 0.2, `shear_range=0.2`, `zoom_range=0.2`,
/// `horizontal_flip=True`, `fill_mode='nearest'`) with current Keras' meaning of each
/// argument; [`AugmentPolicy::book_keras_2_0_8`] is the same arguments as the book's own
/// Keras 2.0.8 carried them out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentPolicy {
    /// Rotation angle drawn from [-r, r] degrees.
    pub rotation_range: f64,
    /// Fraction of the width (< 1) or pixels (>= 1), as Keras reads a float.
    pub width_shift_range: f64,
    /// Fraction of the height (< 1) or pixels (>= 1).
    pub height_shift_range: f64,
    /// Shear angle drawn from [-s, s] in `shear_unit`.
    pub shear_range: f64,
    pub shear_unit: ShearUnit,
    /// `zx` and `zy` each drawn independently from [lo, hi]; Keras' `zoom_range=z` is
    /// `(1 - z, 1 + z)`.
    pub zoom_range: (f64, f64),
    pub horizontal_flip: bool,
    pub vertical_flip: bool,
    pub fill: Fill,
    pub interpolation: Interpolation,
    pub geometry: Geometry,
    /// Seeds every view's draw together with the image key and the view index.
    pub seed: u64,
}

impl Default for AugmentPolicy {
    fn default() -> Self {
        AugmentPolicy {
            rotation_range: 40.0,
            width_shift_range: 0.2,
            height_shift_range: 0.2,
            shear_range: 0.2,
            shear_unit: ShearUnit::Degrees,
            zoom_range: (1.0 - 0.2, 1.0 + 0.2),
            horizontal_flip: true,
            vertical_flip: false,
            fill: Fill::Nearest,
            interpolation: Interpolation::Bilinear,
            geometry: Geometry::Keras3,
            seed: 0,
        }
    }
}

/// Version tag hashed into every view's seed, so that a change to the draw shows as a
/// different tag rather than silently different views under the same policy string.
const DRAW_TAG: &[u8] = b"convbase-augment-v1";

impl AugmentPolicy {
    /// The book's arguments with current Keras' meanings (the default).
    pub fn book() -> Self {
        Self::default()
    }

    /// The book's arguments as Keras 2.0.8, which its notebooks ran, carried them out:
    /// shear in radians, nearest-neighbour sampling, [`Geometry::Keras2`].
    pub fn book_keras_2_0_8() -> Self {
        AugmentPolicy {
            shear_unit: ShearUnit::Radians,
            interpolation: Interpolation::Nearest,
            geometry: Geometry::Keras2,
            ..Self::default()
        }
    }

    /// How the drawn transforms are carried out.
    pub fn sampling(&self) -> Sampling {
        Sampling {
            geometry: self.geometry,
            interpolation: self.interpolation,
            fill: self.fill,
        }
    }

    /// The parameters of view `view` of the image identified by `key`, for an image of
    /// `height` x `width` pixels. View 0 is always [`TransformParams::IDENTITY`].
    ///
    /// Follows Keras' `get_random_transform`: theta ~ U(-r, r); tx ~ U(-h, h) times the
    /// height (when the range is < 1); ty likewise from the width; shear ~ U(-s, s);
    /// zx, zy ~ U(lo, hi) independently (both 1 when the range is exactly (1, 1)); each flip
    /// with probability 0.5 when enabled. The uniforms come from ChaCha20 seeded with
    /// SHA-256(tag, seed, key, view); all eight are always drawn, in that order, so a range
    /// set to 0 leaves the other parameters of every view unchanged.
    pub fn draw(&self, key: &str, view: u32, height: usize, width: usize) -> TransformParams {
        if view == 0 {
            return TransformParams::IDENTITY;
        }
        let mut h = Sha256::new();
        h.update(DRAW_TAG);
        h.update(self.seed.to_le_bytes());
        h.update((key.len() as u64).to_le_bytes());
        h.update(key.as_bytes());
        h.update(view.to_le_bytes());
        let mut rng = ChaCha20Rng::from_seed(h.finalize().into());
        // np.random.random(): 53 random bits in [0, 1).
        let mut unit = || (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let mut uniform = |lo: f64, hi: f64| lo + (hi - lo) * unit();
        let shift = |range: f64, size: usize, u: f64| {
            if range < 1.0 { u * size as f64 } else { u }
        };
        let theta = uniform(-self.rotation_range, self.rotation_range);
        let tx = uniform(-self.height_shift_range, self.height_shift_range);
        let ty = uniform(-self.width_shift_range, self.width_shift_range);
        let shear = uniform(-self.shear_range, self.shear_range);
        let (lo, hi) = self.zoom_range;
        let zx = uniform(lo, hi);
        let zy = uniform(lo, hi);
        let flip_h = uniform(0.0, 1.0) < 0.5;
        let flip_v = uniform(0.0, 1.0) < 0.5;
        let zoom_off = lo == 1.0 && hi == 1.0;
        TransformParams {
            theta,
            tx: shift(self.height_shift_range, height, tx),
            ty: shift(self.width_shift_range, width, ty),
            shear: match self.shear_unit {
                ShearUnit::Degrees => shear,
                ShearUnit::Radians => shear.to_degrees(),
            },
            zx: if zoom_off { 1.0 } else { zx },
            zy: if zoom_off { 1.0 } else { zy },
            flip_horizontal: self.horizontal_flip && flip_h,
            flip_vertical: self.vertical_flip && flip_v,
        }
    }

    /// View `view` of an HWC image (e.g. from [`crate::load_for_network`]) identified by
    /// `key`: [`Self::draw`] then [`affine::apply`]. View 0 is a copy of the image.
    pub fn view(
        &self,
        image: &[f32],
        height: usize,
        width: usize,
        key: &str,
        view: u32,
    ) -> Vec<f32> {
        let params = self.draw(key, view, height, width);
        affine::apply(image, height, width, &params, &self.sampling())
    }

    /// The canonical JSON description (all fields, fixed order), for the features footer.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Wire::from(self)).expect("plain fields serialise")
    }

    fn validate(self, spec: &str) -> Result<Self, PolicyError> {
        let bad = |problem: String| PolicyError {
            spec: spec.to_string(),
            problem,
        };
        for (name, v) in [
            ("rotation", self.rotation_range),
            ("width_shift", self.width_shift_range),
            ("height_shift", self.height_shift_range),
            ("shear", self.shear_range),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(format!("{name} must be a finite number >= 0, not {v}")));
            }
        }
        let (lo, hi) = self.zoom_range;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
            return Err(bad(format!(
                "zoom range {lo}:{hi} must satisfy 0 < lo <= hi"
            )));
        }
        if let Fill::Constant(v) = self.fill
            && !v.is_finite()
        {
            return Err(bad(format!("cval must be finite, not {v}")));
        }
        Ok(self)
    }
}

/// The short spec: every key, in a fixed order, e.g.
/// `rotation=40,width_shift=0.2,height_shift=0.2,shear=0.2,shear_unit=degrees,zoom=0.8:1.2,`
/// `horizontal_flip=true,vertical_flip=false,fill=nearest,interpolation=bilinear,`
/// `geometry=keras3,seed=0` (`cval=V` follows `fill=constant`). Parses back to the same policy.
impl fmt::Display for AugmentPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rotation={},width_shift={},height_shift={},shear={},shear_unit={},zoom={}:{},\
             horizontal_flip={},vertical_flip={},fill={}",
            self.rotation_range,
            self.width_shift_range,
            self.height_shift_range,
            self.shear_range,
            self.shear_unit.name(),
            self.zoom_range.0,
            self.zoom_range.1,
            self.horizontal_flip,
            self.vertical_flip,
            self.fill.name(),
        )?;
        if let Fill::Constant(v) = self.fill {
            write!(f, ",cval={v}")?;
        }
        write!(
            f,
            ",interpolation={},geometry={},seed={}",
            self.interpolation, self.geometry, self.seed
        )
    }
}

/// Parses a spec: an optional preset first (`book`, the default, or `book-keras2.0.8`;
/// an empty spec is `book`),
/// then `key=value` pairs that override it, comma-separated; or the JSON of
/// [`AugmentPolicy::to_json`]. Keys: `rotation`, `width_shift`, `height_shift`, `shear`
/// (numbers), `shear_unit` (`degrees`|`radians`), `zoom` (`z` for 1-z:1+z, or `lo:hi`),
/// `horizontal_flip`, `vertical_flip` (`true`|`false`), `fill`
/// (`nearest`|`constant`|`reflect`|`wrap`), `cval` (number, with `fill=constant`; default
/// 0), `interpolation` (`bilinear`|`nearest`), `geometry` (`keras3`|`keras2`), `seed`.
impl FromStr for AugmentPolicy {
    type Err = PolicyError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |problem: String| PolicyError {
            spec: spec.to_string(),
            problem,
        };
        let trimmed = spec.trim();
        if trimmed.starts_with('{') {
            let wire: Wire =
                serde_json::from_str(trimmed).map_err(|e| bad(format!("invalid JSON: {e}")))?;
            return wire.into_policy().map_err(bad)?.validate(spec);
        }
        let mut policy = AugmentPolicy::book();
        let mut fill_name: Option<String> = None;
        let mut cval: Option<f64> = None;
        let items = trimmed.split(',').map(str::trim).filter(|s| !s.is_empty());
        for (i, item) in items.enumerate() {
            let Some((key, value)) = item.split_once('=') else {
                policy = match item {
                    "book" if i == 0 => AugmentPolicy::book(),
                    "book-keras2.0.8" if i == 0 => AugmentPolicy::book_keras_2_0_8(),
                    _ if i == 0 => {
                        return Err(bad(format!(
                            "`{item}` is neither a preset (book, book-keras2.0.8) nor key=value"
                        )));
                    }
                    _ => return Err(bad(format!("`{item}` is not key=value"))),
                };
                if let Fill::Constant(v) = policy.fill {
                    cval = Some(v);
                }
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let num = || {
                value
                    .parse::<f64>()
                    .map_err(|_| bad(format!("{key}: `{value}` is not a number")))
            };
            let flag = || match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(bad(format!("{key}: `{value}` is not true or false"))),
            };
            match key {
                "rotation" => policy.rotation_range = num()?,
                "width_shift" => policy.width_shift_range = num()?,
                "height_shift" => policy.height_shift_range = num()?,
                "shear" => policy.shear_range = num()?,
                "shear_unit" => {
                    policy.shear_unit = match value {
                        "degrees" => ShearUnit::Degrees,
                        "radians" => ShearUnit::Radians,
                        _ => {
                            return Err(bad(format!(
                                "shear_unit: `{value}` is not degrees or radians"
                            )));
                        }
                    }
                }
                "zoom" => {
                    policy.zoom_range = match value.split_once(':') {
                        Some((lo, hi)) => {
                            let p = |s: &str| {
                                s.trim()
                                    .parse::<f64>()
                                    .map_err(|_| bad(format!("zoom: `{value}` is not z or lo:hi")))
                            };
                            (p(lo)?, p(hi)?)
                        }
                        None => {
                            let z = num()?;
                            (1.0 - z, 1.0 + z)
                        }
                    }
                }
                "horizontal_flip" => policy.horizontal_flip = flag()?,
                "vertical_flip" => policy.vertical_flip = flag()?,
                "fill" => fill_name = Some(value.to_string()),
                "cval" => cval = Some(num()?),
                "interpolation" => policy.interpolation = value.parse().map_err(bad)?,
                "geometry" => policy.geometry = value.parse().map_err(bad)?,
                "seed" => {
                    policy.seed = value
                        .parse()
                        .map_err(|_| bad(format!("seed: `{value}` is not an unsigned integer")))?
                }
                _ => return Err(bad(format!("unknown key `{key}`"))),
            }
        }
        let name = fill_name.unwrap_or_else(|| policy.fill.name().to_string());
        policy.fill = Fill::from_name(&name, cval.unwrap_or(0.0)).ok_or_else(|| {
            bad(format!(
                "fill: `{name}` is not nearest, constant, reflect or wrap"
            ))
        })?;
        if cval.is_some() && !matches!(policy.fill, Fill::Constant(_)) {
            return Err(bad(format!("cval given but fill is {name}, not constant")));
        }
        policy.validate(spec)
    }
}

/// The JSON form, field for field.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    rotation: f64,
    width_shift: f64,
    height_shift: f64,
    shear: f64,
    shear_unit: String,
    zoom: [f64; 2],
    horizontal_flip: bool,
    vertical_flip: bool,
    fill: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cval: Option<f64>,
    interpolation: String,
    geometry: String,
    seed: u64,
}

impl From<&AugmentPolicy> for Wire {
    fn from(p: &AugmentPolicy) -> Self {
        Wire {
            rotation: p.rotation_range,
            width_shift: p.width_shift_range,
            height_shift: p.height_shift_range,
            shear: p.shear_range,
            shear_unit: p.shear_unit.name().into(),
            zoom: [p.zoom_range.0, p.zoom_range.1],
            horizontal_flip: p.horizontal_flip,
            vertical_flip: p.vertical_flip,
            fill: p.fill.name().into(),
            cval: match p.fill {
                Fill::Constant(v) => Some(v),
                _ => None,
            },
            interpolation: p.interpolation.name().into(),
            geometry: p.geometry.name().into(),
            seed: p.seed,
        }
    }
}

impl Wire {
    fn into_policy(self) -> Result<AugmentPolicy, String> {
        let fill = Fill::from_name(&self.fill, self.cval.unwrap_or(0.0))
            .ok_or_else(|| format!("unknown fill `{}`", self.fill))?;
        if self.cval.is_some() && !matches!(fill, Fill::Constant(_)) {
            return Err(format!("cval given but fill is {}", self.fill));
        }
        Ok(AugmentPolicy {
            rotation_range: self.rotation,
            width_shift_range: self.width_shift,
            height_shift_range: self.height_shift,
            shear_range: self.shear,
            shear_unit: match self.shear_unit.as_str() {
                "degrees" => ShearUnit::Degrees,
                "radians" => ShearUnit::Radians,
                other => return Err(format!("unknown shear_unit `{other}`")),
            },
            zoom_range: (self.zoom[0], self.zoom[1]),
            horizontal_flip: self.horizontal_flip,
            vertical_flip: self.vertical_flip,
            fill,
            interpolation: self.interpolation.parse()?,
            geometry: self.geometry.parse()?,
            seed: self.seed,
        })
    }
}
