//! `convbase-augment-preview`: an image and its first K augmented views on one PNG.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use convbase_cli::{GlobalArgs, InputRejected, init_logging, run};
use convbase_data::augment::{AugmentPolicy, sheet};
use convbase_data::{BadImage, ResizeFilter, load_for_network};
use sha2::{Digest, Sha256};

/// Show what an augmentation policy does to an image: loads IMAGE, resizes it to the
/// network's input size, and writes a contact sheet of view 0 (the resized image, framed in
/// orange) followed by views 1..=K, left to right, top to bottom. Each view's parameters are
/// printed on stdout as tab-separated values.
#[derive(Debug, Parser)]
#[command(
    name = "convbase-augment-preview",
    version,
    after_help = "The views are the ones feature extraction computes for this file with the \
same policy, seed and size: each view is drawn from (seed, the SHA-256 of the file's bytes, \
view index).\n\n\
SPEC is a preset (`book`: the book's ImageDataGenerator arguments with current Keras' \
meanings; `book-keras2.0.8`: the same as the book's Keras 2.0.8 carried them out, shear in \
radians and nearest-neighbour sampling), optionally followed by key=value overrides, e.g. \
`book,fill=reflect,vertical_flip=true`; or the JSON a features footer records. Keys: \
rotation, width_shift, height_shift, shear, shear_unit (degrees|radians), zoom (z or lo:hi), \
horizontal_flip, vertical_flip, fill (nearest|constant|reflect|wrap), cval, interpolation \
(bilinear|nearest), geometry (keras3|keras2), seed.\n\n\
Exit codes: 0 written, 1 failed (I/O), 2 usage error (bad flags or SPEC), 3 IMAGE is not a \
usable image."
)]
struct Args {
    /// The image file (any format convbase reads).
    image: PathBuf,
    /// Number of augmented views to show after the image itself.
    #[arg(long, default_value_t = 8)]
    views: u32,
    /// Where to write the contact sheet (PNG).
    #[arg(long)]
    out: PathBuf,
    /// Side of the square input the image is resized to before augmenting, in pixels.
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u32).range(1..=4096))]
    size: u32,
    /// Resize filter, as for feature extraction.
    #[arg(long, value_enum, default_value_t = ResizeFilter::Nearest)]
    resize_filter: ResizeFilter,
    /// Augmentation policy (see below).
    #[arg(long, default_value = "book", value_parser = parse_policy)]
    augment: AugmentPolicy,
    /// Seed of the draws; overrides the seed in SPEC.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    global: GlobalArgs,
}

fn parse_policy(s: &str) -> Result<AugmentPolicy, String> {
    s.parse()
        .map_err(|e: convbase_data::augment::PolicyError| e.problem)
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.global);
    run(|| {
        let mut policy = args.augment;
        if let Some(seed) = args.seed {
            policy.seed = seed;
        }
        tracing::info!("policy: {policy}");
        let bytes = std::fs::read(&args.image)
            .with_context(|| format!("reading {}", args.image.display()))?;
        let key = hex::encode(Sha256::digest(&bytes));
        let pixels = load_for_network(&args.image, args.size, args.resize_filter).map_err(|e| {
            match e.reason {
                BadImage::Unreadable(_) => anyhow::Error::new(e),
                _ => anyhow::Error::new(InputRejected(e.to_string())),
            }
        })?;
        let n = args.size as usize;
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "view\ttheta\ttx\tty\tshear\tzx\tzy\tflip_horizontal\tflip_vertical"
        )?;
        let mut tiles = Vec::with_capacity(args.views as usize + 1);
        for view in 0..=args.views {
            let p = policy.draw(&key, view, n, n);
            writeln!(
                stdout,
                "{view}\t{:.4}\t{:.4}\t{:.4}\t{:.4}\t{:.4}\t{:.4}\t{}\t{}",
                p.theta, p.tx, p.ty, p.shear, p.zx, p.zy, p.flip_horizontal, p.flip_vertical
            )?;
            let img = convbase_data::augment::apply(&pixels, n, n, &p, &policy.sampling());
            tiles.push(sheet::to_rgb8(&img, args.size, args.size));
        }
        let sheet = sheet::contact_sheet(&tiles, args.size);
        sheet
            .save_with_format(&args.out, image::ImageFormat::Png)
            .with_context(|| format!("writing {}", args.out.display()))?;
        tracing::info!(
            "wrote {} ({}x{}, view 0 and {} views)",
            args.out.display(),
            sheet.width(),
            sheet.height(),
            args.views
        );
        Ok(())
    })
}
