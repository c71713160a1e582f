//! The file handle parquet reads contract files through.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{FormatError, Result};
use crate::thrift;

/// A Parquet file as parquet's readers see it: like `File`, except that a read past the
/// end of the file is an error instead of returning no bytes, a range to load is checked
/// against the file's length before its buffer is allocated, and the footer and each page
/// header are checked for the shapes parquet 60 loops or over-allocates on before parquet
/// parses them (see [`crate::thrift`]).
///
/// parquet 60 skips an unknown thrift field of a page header element by element, and each
/// skip of a missing byte string ends quietly at the end of the file: a page header
/// declaring a list of 2^31 strings made billions of reads (a 4.6 kB features file found
/// by `fuzz/` ran for minutes). Reading past the end can only mean a malformed file: every
/// length parquet follows in a valid one lies inside the file.
#[derive(Debug)]
pub(crate) struct ParquetFile {
    file: File,
    len: u64,
}

impl ParquetFile {
    pub(crate) fn open(path: &Path) -> Result<ParquetFile> {
        let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
        Ok(ParquetFile { file, len })
    }

    fn past_end(&self, what: String) -> ParquetError {
        ParquetError::EOF(format!(
            "{what} past the end of the file ({} bytes)",
            self.len
        ))
    }
}

impl Length for ParquetFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for ParquetFile {
    type T = UpToEnd<BufReader<File>>;

    /// parquet asks for a stream to read the 8-byte footer tail from, and one to read each
    /// page header from (then loads the page with `get_bytes`). It also asks for one at a
    /// page's data after peeking at its header, and then reads nothing from it; so the
    /// page header is walked when the stream is first read, not when it is asked for.
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        if start > self.len {
            return Err(self.past_end(format!("reading from offset {start}")));
        }
        let walk = (start + FOOTER_TAIL < self.len).then(|| HeaderWalk {
            file: self.file.try_clone(),
            start,
            len: self.len,
        });
        Ok(UpToEnd {
            inner: self.reader_at(start)?,
            left: self.len - start,
            walk,
        })
    }

    /// parquet loads the footer's metadata (which ends where the 8-byte tail starts) and
    /// each page with this.
    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if start
            .checked_add(length as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(self.past_end(format!("{length} bytes at offset {start}")));
        }
        let bytes = self.file.get_bytes(start, length)?;
        if length > 0 && start + length as u64 + FOOTER_TAIL == self.len {
            thrift::walk_footer(&mut thrift::Slice(&bytes))
                .map_err(|stop| self.malformed("the footer's metadata".into(), stop))?;
        }
        Ok(bytes)
    }
}

/// The footer's tail: the metadata's length (4 bytes) and `PAR1`.
const FOOTER_TAIL: u64 = 8;

impl ParquetFile {
    fn malformed(&self, what: String, stop: thrift::Stop) -> ParquetError {
        match stop {
            thrift::Stop::PastEnd => self.past_end(format!("{what} runs")),
            thrift::Stop::Refused(why) => {
                ParquetError::General(format!("malformed Parquet file: {what} holds {why}"))
            }
            thrift::Stop::Io(e) => ParquetError::External(Box::new(e)),
        }
    }

    fn reader_at(&self, start: u64) -> std::io::Result<BufReader<File>> {
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(start))?;
        Ok(BufReader::new(file))
    }
}

/// The walk of the page header at `start`, done before the first byte is read from there.
#[derive(Debug)]
pub(crate) struct HeaderWalk {
    file: std::io::Result<File>,
    start: u64,
    len: u64,
}

impl HeaderWalk {
    /// Runs before the stream reads anything. A cloned `File` shares its offset with the
    /// stream's, so the offset is put back where the stream starts.
    fn run(self) -> std::io::Result<()> {
        let mut file = self.file?;
        file.seek(SeekFrom::Start(self.start))?;
        let mut header = thrift::Stream {
            reader: BufReader::new(file.try_clone()?),
            left: self.len - self.start,
        };
        let walked = thrift::walk_struct(&mut header);
        file.seek(SeekFrom::Start(self.start))?;
        let what = format!("the page header at offset {}", self.start);
        walked.map_err(|stop| match stop {
            thrift::Stop::PastEnd => std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{what} runs past the end of the file ({} bytes)", self.len),
            ),
            thrift::Stop::Refused(why) => std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("malformed Parquet file: {what} holds {why}"),
            ),
            thrift::Stop::Io(e) => e,
        })
    }
}

/// A reader of the rest of a file that fails when asked for bytes beyond its end, and
/// walks the page header there before its first read.
#[derive(Debug)]
pub(crate) struct UpToEnd<R> {
    inner: R,
    left: u64,
    walk: Option<HeaderWalk>,
}

impl<R: Read> Read for UpToEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(walk) = self.walk.take() {
            walk.run()?;
        }
        if self.left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "malformed Parquet file: a length runs past the end of the file",
            ));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file became shorter while it was read",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_end_and_fails_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let f = ParquetFile::open(&path).unwrap();
        let mut r = f.get_read(4).unwrap();
        let mut buf = [0u8; 4];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"4567");
        let mut rest = [0u8; 8];
        assert_eq!(r.read(&mut rest).unwrap(), 2);
        assert_eq!(&rest[..2], b"89");
        let e = r.read(&mut rest).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        // Skipping 2^31 missing bytes one at a time stops at the first.
        let mut r = f.get_read(10).unwrap();
        assert!(std::io::copy(&mut (&mut r).take(1), &mut std::io::sink()).is_err());

        assert_eq!(f.get_bytes(2, 8).unwrap().as_ref(), b"23456789");
        let e = f.get_bytes(2, 9).unwrap_err().to_string();
        assert!(
            e.contains("9 bytes at offset 2 past the end of the file (10 bytes)"),
            "{e}"
        );
        assert!(f.get_bytes(u64::MAX, 2).is_err());
        assert!(f.get_read(11).is_err());
    }

    /// A page header parquet 60 would loop on (an unknown field holding a list of 2^31
    /// booleans) is refused when parquet reads it; a well-formed one is read as it is.
    #[test]
    fn a_page_header_holding_a_list_of_booleans_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let good = [0x15, 0x04, 0x15, 0x02, 0x00]; // two i32 fields, stop
        let bad = [0x09, 0xC8, 0x01, 0xF1, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0x00];
        let mut bytes = b"PAR1".to_vec();
        bytes.extend_from_slice(&good);
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(b"\0\0\0\0PAR1");
        std::fs::write(&path, &bytes).unwrap();
        let f = ParquetFile::open(&path).unwrap();
        let mut header = [0u8; 5];
        f.get_read(4).unwrap().read_exact(&mut header).unwrap();
        assert_eq!(header, good);
        let e = f
            .get_read(9)
            .unwrap()
            .read(&mut header)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the page header at offset 9 holds a list of 2147483647 booleans"),
            "{e}"
        );
        // parquet also asks for a stream at a page's data after peeking at its header, and
        // reads nothing from it: asking is no error, whatever the bytes there.
        f.get_read(10).unwrap();
        // The footer's tail is read as it is.
        f.get_read(bytes.len() as u64 - 8).unwrap();
    }
}
