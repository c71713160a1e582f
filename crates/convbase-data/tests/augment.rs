//! Augmentation checked against Keras and SciPy (goldens from
//! scripts/dev/make_augment_goldens.py), the draw against an independent implementation of
//! its specification, the policy's written forms, and `convbase-augment-preview`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use convbase_data::augment::{
    self, AugmentPolicy, Fill, Geometry, Interpolation, Sampling, ShearUnit, TransformParams,
};
use image::RgbImage;
use serde_json::Value;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/augment")
        .join(name)
}

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(golden(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// An input image of the goldens as HWC f32 0..255, with its height and width.
fn input(name: &str) -> (Vec<f32>, usize, usize) {
    let img = image::open(golden(&format!("in_{name}.png")))
        .unwrap()
        .to_rgb8();
    let (w, h) = img.dimensions();
    let px = img.into_raw().into_iter().map(f32::from).collect();
    (px, h as usize, w as usize)
}

fn reference(name: &str) -> Vec<f32> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(golden(&format!("{name}.f32.gz"))).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn params(v: &Value) -> TransformParams {
    serde_json::from_value(v.clone()).unwrap()
}

/// The largest difference Keras' float32 output may show against ours: both compute in
/// double precision and round once to float32 (half an ulp is 7.6e-6 at 255), but NumPy
/// composes the 3x3 matrices with BLAS and may evaluate sin/cos with its own SIMD code,
/// so coordinates can differ in the last bits of a double.
const TOLERANCE: f32 = 1e-4;

#[test]
fn transforms_match_keras_and_scipy() {
    let cases = json("cases.json");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 23, "cases.json is incomplete");
    let mut worst = 0.0f32;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (img, h, w) = input(case["input"].as_str().unwrap());
        let p = params(&case["params"]);
        let sampling = Sampling {
            geometry: case["geometry"].as_str().unwrap().parse().unwrap(),
            interpolation: case["interpolation"].as_str().unwrap().parse().unwrap(),
            fill: Fill::from_name(
                case["fill"].as_str().unwrap(),
                case["cval"].as_f64().unwrap(),
            )
            .unwrap(),
        };
        let want = reference(name);
        assert_eq!(want.len(), img.len(), "{name}: golden size");
        // The case must change the image, or matching it would prove nothing.
        assert!(want != img, "{name}: the reference equals the input");
        let got = augment::apply(&img, h, w, &p, &sampling);
        let (max, count) = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold((0.0f32, 0), |(m, n), d| {
                (m.max(d), n + usize::from(d > 0.0))
            });
        eprintln!(
            "{name:32} {:7} {:8} {:9} max |diff| {max:.2e}, {count} of {} values differ",
            sampling.geometry.to_string(),
            sampling.interpolation.to_string(),
            sampling.fill.name(),
            got.len()
        );
        assert!(max <= TOLERANCE, "{name}: max |diff| {max} > {TOLERANCE}");
        if sampling.interpolation == Interpolation::Nearest {
            assert_eq!(
                count, 0,
                "{name}: nearest sampling must pick the same pixels"
            );
        }
        worst = worst.max(max);
    }
    eprintln!("worst max |diff| over all cases: {worst:.2e}");
}

/// The two geometries and the fill modes really differ on these inputs (so each golden
/// tests its own convention).
#[test]
fn conventions_differ_on_the_golden_inputs() {
    let (img, h, w) = input("gradient");
    let p = params(&json("cases.json")[0]["params"]); // a rotation
    let k3 = augment::apply(&img, h, w, &p, &Sampling::default());
    let k2 = augment::apply(
        &img,
        h,
        w,
        &p,
        &Sampling {
            geometry: Geometry::Keras2,
            ..Sampling::default()
        },
    );
    assert_ne!(k3, k2);
    let wide = json("cases.json")
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gradient_wide_nearest")
        .map(|c| params(&c["params"]))
        .unwrap();
    let outs: Vec<Vec<f32>> = [
        Fill::Nearest,
        Fill::Constant(0.0),
        Fill::Reflect,
        Fill::Wrap,
    ]
    .into_iter()
    .map(|fill| {
        augment::apply(
            &img,
            h,
            w,
            &wide,
            &Sampling {
                fill,
                ..Sampling::default()
            },
        )
    })
    .collect();
    for i in 0..outs.len() {
        for j in i + 1..outs.len() {
            assert_ne!(outs[i], outs[j], "fills {i} and {j} agree");
        }
    }
}

/// The draw against the specification's independent Python implementation.
#[test]
fn draws_match_the_specification() {
    let draws = json("draws.json");
    let draws = draws.as_array().unwrap();
    assert!(draws.len() >= 60);
    for d in draws {
        let r = &d["ranges"];
        let zoom = r["zoom"].as_array().unwrap();
        let policy = AugmentPolicy {
            rotation_range: r["rotation"].as_f64().unwrap(),
            width_shift_range: r["width_shift"].as_f64().unwrap(),
            height_shift_range: r["height_shift"].as_f64().unwrap(),
            shear_range: r["shear"].as_f64().unwrap(),
            shear_unit: match r["shear_unit"].as_str().unwrap() {
                "degrees" => ShearUnit::Degrees,
                _ => ShearUnit::Radians,
            },
            zoom_range: (zoom[0].as_f64().unwrap(), zoom[1].as_f64().unwrap()),
            horizontal_flip: r["horizontal_flip"].as_bool().unwrap(),
            vertical_flip: r["vertical_flip"].as_bool().unwrap(),
            seed: r["seed"].as_u64().unwrap(),
            ..AugmentPolicy::book()
        };
        let key = d["key"].as_str().unwrap();
        let view = d["view"].as_u64().unwrap() as u32;
        let (h, w) = (
            d["height"].as_u64().unwrap() as usize,
            d["width"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            policy.draw(key, view, h, w),
            params(&d["params"]),
            "{} key {key:?} view {view}",
            d["policy"]
        );
    }
}

#[test]
fn draw_is_deterministic_and_view_zero_is_the_image() {
    let book = AugmentPolicy::book();
    let key = "0123abcd";
    assert_eq!(book.draw(key, 3, 150, 150), book.draw(key, 3, 150, 150));
    let views: Vec<TransformParams> = (1..20).map(|v| book.draw(key, v, 150, 150)).collect();
    for i in 0..views.len() {
        for j in i + 1..views.len() {
            assert_ne!(
                views[i],
                views[j],
                "views {} and {} drew the same",
                i + 1,
                j + 1
            );
        }
    }
    assert_ne!(
        book.draw(key, 1, 150, 150),
        book.draw("0123abce", 1, 150, 150)
    );
    let seeded = AugmentPolicy { seed: 1, ..book };
    assert_ne!(book.draw(key, 1, 150, 150), seeded.draw(key, 1, 150, 150));
    for policy in [book, AugmentPolicy::book_keras_2_0_8(), seeded] {
        assert!(policy.draw(key, 0, 150, 150).is_identity());
        assert!(!policy.draw(key, 1, 150, 150).is_identity());
    }
    let (img, h, w) = input("tshirt");
    assert_eq!(book.view(&img, h, w, key, 0), img);
    assert_ne!(book.view(&img, h, w, key, 1), img);
    assert_eq!(
        book.view(&img, h, w, key, 5),
        augment::apply(&img, h, w, &book.draw(key, 5, h, w), &book.sampling())
    );
}

#[test]
fn draw_covers_keras_ranges() {
    let n = 4000;
    let book = AugmentPolicy::book();
    let draws: Vec<TransformParams> = (1..=n).map(|v| book.draw("k", v, 150, 100)).collect();
    let range = |f: fn(&TransformParams) -> f64| {
        draws
            .iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let within = |name: &str, (lo, hi): (f64, f64), a: f64, b: f64| {
        assert!(
            lo >= a && hi <= b,
            "{name} range {lo}..{hi} outside {a}..{b}"
        );
        let span = b - a;
        assert!(
            lo < a + 0.01 * span && hi > b - 0.01 * span,
            "{name} range {lo}..{hi} does not cover {a}..{b}"
        );
    };
    within("theta", range(|p| p.theta), -40.0, 40.0);
    within("tx (height 150)", range(|p| p.tx), -30.0, 30.0);
    within("ty (width 100)", range(|p| p.ty), -20.0, 20.0);
    within("shear", range(|p| p.shear), -0.2, 0.2);
    within("zx", range(|p| p.zx), 0.8, 1.2);
    within("zy", range(|p| p.zy), 0.8, 1.2);
    let flips = draws.iter().filter(|p| p.flip_horizontal).count() as f64 / f64::from(n);
    assert!(
        (0.46..0.54).contains(&flips),
        "horizontal flip rate {flips}"
    );
    assert!(draws.iter().all(|p| !p.flip_vertical));
    // zx and zy are drawn independently, as Keras does.
    let mean = |f: fn(&TransformParams) -> f64| draws.iter().map(f).sum::<f64>() / f64::from(n);
    let (mx, my) = (mean(|p| p.zx), mean(|p| p.zy));
    let cov = draws.iter().map(|p| (p.zx - mx) * (p.zy - my)).sum::<f64>() / f64::from(n);
    let var = |m: f64, f: fn(&TransformParams) -> f64| {
        draws.iter().map(|p| (f(p) - m).powi(2)).sum::<f64>() / f64::from(n)
    };
    let corr = cov / (var(mx, |p| p.zx) * var(my, |p| p.zy)).sqrt();
    assert!(corr.abs() < 0.06, "zx and zy correlate: {corr}");

    // The book's Keras: shear_range 0.2 in radians, i.e. up to 11.46 degrees.
    let old = AugmentPolicy::book_keras_2_0_8();
    let shear = (1..=500)
        .map(|v| old.draw("k", v, 150, 150).shear.abs())
        .fold(0.0, f64::max);
    assert!(shear > 11.0 && shear <= 0.2f64.to_degrees(), "{shear}");
    // A shift range >= 1 is in pixels; zoom (1, 1) is off.
    let px = AugmentPolicy {
        width_shift_range: 5.0,
        zoom_range: (1.0, 1.0),
        ..book
    };
    for v in 1..200 {
        let p = px.draw("k", v, 150, 150);
        assert!(p.ty.abs() <= 5.0 && (p.zx, p.zy) == (1.0, 1.0));
    }
}

#[test]
fn spec_and_json_round_trip() {
    let book = AugmentPolicy::book();
    assert_eq!(
        book.to_string(),
        "rotation=40,width_shift=0.2,height_shift=0.2,shear=0.2,shear_unit=degrees,\
         zoom=0.8:1.2,horizontal_flip=true,vertical_flip=false,fill=nearest,\
         interpolation=bilinear,geometry=keras3,seed=0"
    );
    assert_eq!(
        book.to_json(),
        r#"{"rotation":40.0,"width_shift":0.2,"height_shift":0.2,"shear":0.2,"shear_unit":"degrees","zoom":[0.8,1.2],"horizontal_flip":true,"vertical_flip":false,"fill":"nearest","interpolation":"bilinear","geometry":"keras3","seed":0}"#
    );
    assert_eq!("book".parse::<AugmentPolicy>().unwrap(), book);
    assert_eq!("".parse::<AugmentPolicy>().unwrap(), book);
    let old: AugmentPolicy = "book-keras2.0.8".parse().unwrap();
    assert_eq!(old, AugmentPolicy::book_keras_2_0_8());
    assert_eq!(
        (old.shear_unit, old.interpolation, old.geometry),
        (ShearUnit::Radians, Interpolation::Nearest, Geometry::Keras2)
    );
    let custom: AugmentPolicy =
        "book, fill=constant, cval=12.5, seed=18446744073709551615, zoom=0.9:1.3, vertical_flip=true"
            .parse()
            .unwrap();
    assert_eq!(custom.fill, Fill::Constant(12.5));
    assert_eq!(custom.seed, u64::MAX);
    assert_eq!(custom.zoom_range, (0.9, 1.3));
    assert!(custom.vertical_flip);
    assert_eq!(
        "zoom=0.25".parse::<AugmentPolicy>().unwrap().zoom_range,
        (0.75, 1.25)
    );
    let awkward = AugmentPolicy {
        rotation_range: 12.345678901234567,
        zoom_range: (0.1 + 0.2, 1.0 / 3.0),
        fill: Fill::Constant(-1e-300),
        ..book
    };
    for p in [
        book,
        old,
        custom,
        awkward,
        AugmentPolicy {
            fill: Fill::Wrap,
            ..book
        },
    ] {
        assert_eq!(p.to_string().parse::<AugmentPolicy>().unwrap(), p, "{p}");
        assert_eq!(p.to_json().parse::<AugmentPolicy>().unwrap(), p, "{p}");
    }
    for (bad, why) in [
        ("rotation=40,colour=1", "unknown key `colour`"),
        ("book,fill=reflect,cval=3", "cval given"),
        ("rotation=-5", "finite number >= 0"),
        ("zoom=1.2:0.8", "0 < lo <= hi"),
        ("zoom=1.5", "0 < lo <= hi"),
        ("shear=abc", "not a number"),
        ("book,book", "not key=value"),
        ("bok", "neither a preset"),
        ("fill=mirror", "not nearest, constant, reflect or wrap"),
        ("geometry=keras1", "unknown geometry"),
        ("seed=-1", "not an unsigned integer"),
        (r#"{"rotation":40}"#, "invalid JSON"),
    ] {
        let err = bad.parse::<AugmentPolicy>().unwrap_err();
        assert!(err.problem.contains(why), "{bad}: {err}");
        assert!(
            err.to_string().contains(bad),
            "{err} does not quote the spec"
        );
    }
    let mut j: Value = serde_json::from_str(&book.to_json()).unwrap();
    j["extra"] = Value::from(1);
    assert!(j.to_string().parse::<AugmentPolicy>().is_err());
}

fn preview() -> Command {
    Command::new(env!("CARGO_BIN_EXE_convbase-augment-preview"))
}

#[test]
fn preview_writes_the_views_extraction_would_compute() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.png");
    std::fs::copy(golden("in_shirt.png"), &src).unwrap();
    let out = dir.path().join("sheet.png");
    let run = preview()
        .arg(&src)
        .args(["--views", "3", "--size", "32", "--seed", "5", "--augment"])
        .arg("book,fill=reflect")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8(run.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(lines[0].starts_with("view\ttheta"));
    assert_eq!(
        lines[1],
        "0\t0.0000\t0.0000\t0.0000\t0.0000\t1.0000\t1.0000\tfalse\tfalse"
    );

    // 4 tiles of 32 px: 2 columns, 2 rows, 6 px apart.
    let sheet = image::open(&out).unwrap().to_rgb8();
    assert_eq!(sheet.dimensions(), (2 * 38 + 6, 2 * 38 + 6));
    let tile = |i: u32| -> RgbImage {
        image::imageops::crop_imm(&sheet, 6 + (i % 2) * 38, 6 + (i / 2) * 38, 32, 32).to_image()
    };
    // Same key (the file's SHA-256), seed and size as extraction: same pixels.
    let policy: AugmentPolicy = "book,fill=reflect,seed=5".parse().unwrap();
    let key = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(std::fs::read(&src).unwrap()))
    };
    let pixels =
        convbase_data::load_for_network(&src, 32, convbase_data::ResizeFilter::Nearest).unwrap();
    for view in 0..4 {
        let want = augment::sheet::to_rgb8(&policy.view(&pixels, 32, 32, &key, view), 32, 32);
        assert_eq!(tile(view), want, "view {view}");
    }
    assert_ne!(tile(0), tile(1));
}

#[test]
fn preview_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sheet.png");
    let bad_spec = preview()
        .arg(golden("in_shirt.png"))
        .args(["--augment", "rotation=x"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(bad_spec.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_spec.stderr).contains("not a number"));

    let not_image = dir.path().join("notes.png");
    std::fs::write(&not_image, "hello").unwrap();
    let rejected = preview()
        .arg(&not_image)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(rejected.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&rejected.stderr).contains("notes.png"));

    let missing = preview()
        .arg(dir.path().join("absent.png"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(!out.exists());
}
