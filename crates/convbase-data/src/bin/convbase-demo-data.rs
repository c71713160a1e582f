//! `convbase-demo-data`: write the Fashion-MNIST demo data set from IDX files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use convbase_cli::{GlobalArgs, init_logging, run};
use convbase_data::demo;

/// Write the two-class Fashion-MNIST demo set (T-shirt/top vs Shirt) laid out like the
/// seed's Dogs vs Cats: OUT_DIR/{train,validation,test}/{shirt,tshirt}/CLASS.INDEX.png,
/// 1000/500/500 images per class. Does nothing when OUT_DIR is already complete; otherwise
/// writes the whole tree into a temporary folder and renames it into place.
#[derive(Debug, Parser)]
#[command(
    name = "convbase-demo-data",
    version,
    after_help = "Per class, in file order: the first 1000 images of the train file go to \
train, the next 500 to validation, the first 500 of the t10k file to test. INDEX is the \
image's position in its IDX file. Pixels are the IDX file's, as 28x28 grayscale PNG.\n\n\
Exit codes: 0 written or already complete, 1 failed (I/O), 2 usage error, 3 not valid IDX input."
)]
struct Args {
    /// Folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
    /// and t10k-labels-idx1-ubyte (each optionally .gz), as Debian's dataset-fashion-mnist
    /// ships them in usr/share/datasets/fashion-mnist/.
    idx_dir: PathBuf,
    /// Output root of the demo data set.
    out_dir: PathBuf,
    #[command(flatten)]
    global: GlobalArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.global);
    run(|| {
        let written = demo::write(&args.idx_dir, &args.out_dir).map_err(|e| match e {
            demo::DemoError::Idx { .. } => {
                anyhow::Error::new(convbase_cli::InputRejected(e.to_string()))
            }
            other => anyhow::Error::new(other),
        })?;
        if written {
            tracing::info!(
                "wrote {} images under {}",
                demo::TOTAL,
                args.out_dir.display()
            );
        } else {
            tracing::info!("{} is complete; nothing to do", args.out_dir.display());
        }
        Ok(())
    })
}
