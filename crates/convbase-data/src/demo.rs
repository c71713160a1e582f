//! The demo data set: a two-class Fashion-MNIST subset laid out like the seed's Dogs vs Cats.
//!
//! Classes T-shirt/top (label 0, folder `tshirt`) and Shirt (label 6, folder `shirt`). Per
//! class, in file order: the first 1000 images of the train file go to `train`, the next
//! 500 to `validation`, and the first 500 of the t10k file to `test`. Each is written as
//! `SPLIT/CLASS/CLASS.INDEX.png` (INDEX: position in its IDX file), a 28x28 grayscale PNG
//! with the IDX file's pixels.

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use convbase_format::Split;
use flate2::read::GzDecoder;
use image::GrayImage;

/// (folder name, Fashion-MNIST label) of the two demo classes.
pub const CLASSES: [(&str, u8); 2] = [("tshirt", 0), ("shirt", 6)];
/// Images per class taken for each split.
const PER_CLASS: [(Split, usize); 3] = [
    (Split::Train, 1000),
    (Split::Validation, 500),
    (Split::Test, 500),
];
/// Number of files in a complete demo set.
pub const TOTAL: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not an IDX file: {problem}", path.display())]
    Idx { path: PathBuf, problem: String },
    #[error("{}: {source}", path.display())]
    Png {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The contents of an IDX file: its dimensions and raw `u8` data.
#[derive(Debug)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (type code 0x08), gzip-compressed or not.
/// Format: two zero bytes, type code, number of dimensions, each dimension as a big-endian
/// `u32`, then the data.
pub fn read_idx(path: &Path) -> Result<Idx, DemoError> {
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|f| BufReader::new(f).read_to_end(&mut raw))
        .map_err(io_err(path))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(io_err(path))?;
        raw = out;
    }
    let bad = |problem: String| DemoError::Idx {
        path: path.to_path_buf(),
        problem,
    };
    if raw.len() < 4 || raw[0] != 0 || raw[1] != 0 {
        return Err(bad("bad magic number".into()));
    }
    if raw[2] != 0x08 {
        return Err(bad(format!(
            "data type 0x{:02x}, expected 0x08 (u8)",
            raw[2]
        )));
    }
    let ndim = usize::from(raw[3]);
    let header = 4 + 4 * ndim;
    if raw.len() < header {
        return Err(bad("header cut short".into()));
    }
    let dims: Vec<usize> = raw[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize)
        .collect();
    let expected: usize = dims.iter().product();
    if raw.len() - header != expected {
        return Err(bad(format!(
            "dimensions {dims:?} need {expected} bytes of data, found {}",
            raw.len() - header
        )));
    }
    raw.drain(..header);
    Ok(Idx { dims, data: raw })
}

/// One demo file to write: where it goes and the pixels it holds.
#[derive(Debug)]
pub struct DemoImage {
    /// Path relative to the output root, e.g. `train/tshirt/tshirt.1.png`.
    pub rel: String,
    pub width: u32,
    pub height: u32,
    /// Row-major 8-bit grey levels.
    pub pixels: Vec<u8>,
}

fn images_and_labels(dir: &Path, prefix: &str) -> Result<(Idx, Idx), DemoError> {
    let find = |stem: &str| -> PathBuf {
        let gz = dir.join(format!("{prefix}-{stem}.gz"));
        if gz.exists() {
            gz
        } else {
            dir.join(format!("{prefix}-{stem}"))
        }
    };
    let (ip, lp) = (find("images-idx3-ubyte"), find("labels-idx1-ubyte"));
    let images = read_idx(&ip)?;
    let labels = read_idx(&lp)?;
    if images.dims.len() != 3 || labels.dims.len() != 1 || images.dims[0] != labels.dims[0] {
        return Err(DemoError::Idx {
            path: ip,
            problem: format!(
                "images {:?} do not match labels {:?}",
                images.dims, labels.dims
            ),
        });
    }
    Ok((images, labels))
}

/// Selects the demo images from the Fashion-MNIST IDX files in `idx_dir`
/// (`train-*` and `t10k-*` `images-idx3-ubyte` / `labels-idx1-ubyte`, `.gz` or not).
pub fn select(idx_dir: &Path) -> Result<Vec<DemoImage>, DemoError> {
    let mut out = Vec::with_capacity(TOTAL);
    for (prefix, splits) in [("train", &PER_CLASS[..2]), ("t10k", &PER_CLASS[2..])] {
        let (images, labels) = images_and_labels(idx_dir, prefix)?;
        let pixels = images.dims[1] * images.dims[2];
        for (class, label) in CLASSES {
            let mut indices = labels
                .data
                .iter()
                .enumerate()
                .filter(|&(_, &l)| l == label)
                .map(|(i, _)| i);
            for &(split, n) in splits {
                let taken: Vec<usize> = indices.by_ref().take(n).collect();
                if taken.len() < n {
                    return Err(DemoError::Idx {
                        path: idx_dir.join(prefix),
                        problem: format!("fewer than the needed {n} images of class {class}"),
                    });
                }
                for i in taken {
                    out.push(DemoImage {
                        rel: format!("{split}/{class}/{class}.{i}.png"),
                        width: images.dims[2] as u32,
                        height: images.dims[1] as u32,
                        pixels: images.data[i * pixels..(i + 1) * pixels].to_vec(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// True when `out_dir` holds exactly the files of `images` (names only; contents are
/// trusted, as the tree is only ever published whole).
pub fn is_complete(out_dir: &Path, images: &[DemoImage]) -> bool {
    let mut found = 0usize;
    let mut stack = vec![out_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(list) = fs::read_dir(&dir) else {
            return false;
        };
        for item in list.flatten() {
            match item.file_type() {
                Ok(t) if t.is_dir() => stack.push(item.path()),
                _ => found += 1,
            }
        }
    }
    found == images.len() && images.iter().all(|i| out_dir.join(&i.rel).is_file())
}

/// Writes the demo set under `out_dir` unless it is already complete. The whole tree is
/// written into a temporary sibling folder and renamed into place, so `out_dir` is never
/// seen half-written. Returns whether anything was written.
pub fn write(idx_dir: &Path, out_dir: &Path) -> Result<bool, DemoError> {
    let images = select(idx_dir)?;
    if is_complete(out_dir, &images) {
        return Ok(false);
    }
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "demo".into());
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tmp = parent.join(format!(".{name}.tmp.{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    for img in &images {
        let path = tmp.join(&img.rel);
        let dir = path.parent().expect("file under a folder");
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        GrayImage::from_raw(img.width, img.height, img.pixels.clone())
            .expect("pixels sized by the IDX dimensions")
            .save(&path)
            .map_err(|source| DemoError::Png {
                path: path.clone(),
                source,
            })?;
    }
    if out_dir.exists() {
        fs::remove_dir_all(out_dir).map_err(io_err(out_dir))?;
    }
    fs::rename(&tmp, out_dir).map_err(io_err(out_dir))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Fake Fashion-MNIST files of 2x3 images, labels cycling 0, 6, 3; image i's pixels
    /// hold i's low byte, so a written file shows which image it came from.
    fn fake(dir: &Path, prefix: &str, n: usize, compress: bool) {
        let labels: Vec<u8> = (0..n).map(|i| [0, 6, 3][i % 3]).collect();
        let pixels: Vec<u8> = (0..n).flat_map(|i| [i as u8; 6]).collect();
        let write = |name: &str, bytes: Vec<u8>| {
            let (name, bytes) = if compress {
                (format!("{name}.gz"), gz(&bytes))
            } else {
                (name.to_string(), bytes)
            };
            fs::write(dir.join(name), bytes).unwrap();
        };
        write(
            &format!("{prefix}-images-idx3-ubyte"),
            idx_bytes(&[n as u32, 3, 2], &pixels),
        );
        write(
            &format!("{prefix}-labels-idx1-ubyte"),
            idx_bytes(&[n as u32], &labels),
        );
    }

    #[test]
    fn idx_reader_checks_header_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, gz(&idx_bytes(&[2, 1, 2], &[1, 2, 3, 4]))).unwrap();
        let idx = read_idx(&p).unwrap();
        assert_eq!((idx.dims, idx.data), (vec![2, 1, 2], vec![1, 2, 3, 4]));
        fs::write(&p, idx_bytes(&[2, 1, 2], &[1, 2, 3])).unwrap();
        assert!(
            read_idx(&p)
                .unwrap_err()
                .to_string()
                .contains("need 4 bytes")
        );
        let mut floats = idx_bytes(&[1], &[0, 0, 0, 0]);
        floats[2] = 0x0D;
        fs::write(&p, floats).unwrap();
        assert!(read_idx(&p).unwrap_err().to_string().contains("0x0d"));
    }

    #[test]
    fn writes_the_selection_once_and_atomically() {
        let dir = tempfile::tempdir().unwrap();
        fake(dir.path(), "train", 4500, true);
        fake(dir.path(), "t10k", 1500, false);
        let out = dir.path().join("demo");
        assert!(write(dir.path(), &out).unwrap());
        let names = |split: &str, class: &str| {
            let mut v: Vec<String> = fs::read_dir(out.join(split).join(class))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort_by_key(|n| n.split('.').nth(1).unwrap().parse::<usize>().unwrap());
            v
        };
        // Shirt (label 6) is at indices 1, 4, 7, ...: the 1001st is index 3001.
        let shirt_val = names("validation", "shirt");
        assert_eq!(shirt_val.len(), 500);
        assert_eq!(shirt_val[0], "shirt.3001.png");
        assert_eq!(names("train", "tshirt").last().unwrap(), "tshirt.2997.png");
        assert_eq!(names("test", "tshirt").len(), 500);
        let img = image::open(out.join("validation/shirt/shirt.3001.png")).unwrap();
        assert_eq!(img.color(), image::ColorType::L8);
        assert_eq!(img.to_luma8().into_raw(), vec![(3001 % 256) as u8; 6]);
        assert!(!write(dir.path(), &out).unwrap(), "complete: nothing to do");
        // An incomplete tree is rebuilt whole; no temporary folder is left behind.
        fs::remove_file(out.join("test/shirt/shirt.1.png")).unwrap();
        assert!(write(dir.path(), &out).unwrap());
        assert!(out.join("test/shirt/shirt.1.png").is_file());
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp.")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
