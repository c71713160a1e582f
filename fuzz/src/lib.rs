//! What the fuzz targets share.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Writes `data` to this process's input file and returns its path: the contract readers
/// take a path. On a RAM disk when there is one.
pub fn as_file(data: &[u8]) -> &'static std::path::Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("convbase-fuzz-{}.parquet", std::process::id()))
    });
    std::fs::write(path, data).expect("writing the fuzz input file");
    path
}

/// Makes only the panics that escape the code under test crashes. libfuzzer-sys aborts on
/// every panic, even one that convbase catches on purpose (`convbase-format` contains the
/// panics parquet 60 still has on malformed files and turns them into errors); with this
/// hook a panic is printed and unwinds, and only one that reaches libfuzzer-sys's own
/// `catch_unwind` aborts the process (a crash, with the panic printed above it).
pub fn crash_only_on_escaped_panics() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic (a crash unless contained): {info}")
    }));
}
