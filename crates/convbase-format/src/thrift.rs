//! A check of the thrift structs parquet parses (the footer's `FileMetaData`, each page
//! header) for the shape on which parquet 60 loops without reading input, and (in the
//! footer) for a schema element declaring more children than the schema holds, for which
//! parquet 60 reserves memory before reading any ([`walk_footer`]).
//!
//! parquet 60 skips a field it does not know by its wire type, and skips a boolean element
//! of a list, set or map without reading anything (in the compact protocol each takes a
//! byte). A few bytes declaring an unknown field holding a list of 2^31 booleans therefore
//! kept it looping for minutes (a 4.2 kB features file found by `fuzz/`, a timeout). No
//! struct of a Parquet footer or page header has a list or set of booleans (nor any map),
//! so a list or set of booleans, or a map of booleans to booleans, is refused here before
//! parquet sees it.
//!
//! The walk follows the wire types (as parquet's skip does) and reads nothing but the
//! struct: every element it steps over takes at least one byte, so it ends within the
//! bytes the struct may take. It finds what parquet's skip would meet. (parquet reads a
//! field it knows by the field's type, not its wire type: bytes that give a known field
//! another wire type could make the two walks part ways; nothing here guards that case.)

/// Why a walk stopped before the end of the struct.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The struct runs past the end of the bytes it may take (the footer, the file).
    PastEnd,
    /// A shape parquet 60 may loop on, or bytes that are no compact-protocol struct.
    Refused(String),
    Io(std::io::Error),
}

/// Where the struct's bytes come from: `left` of them at most.
pub(crate) trait Source {
    fn byte(&mut self) -> Result<u8, Stop>;
    fn advance(&mut self, n: u64) -> Result<(), Stop>;
    fn left(&self) -> u64;
}

/// A struct in memory (the footer).
pub(crate) struct Slice<'a>(pub(crate) &'a [u8]);

impl Source for Slice<'_> {
    fn byte(&mut self) -> Result<u8, Stop> {
        let (&b, rest) = self.0.split_first().ok_or(Stop::PastEnd)?;
        self.0 = rest;
        Ok(b)
    }

    fn advance(&mut self, n: u64) -> Result<(), Stop> {
        if n > self.left() {
            return Err(Stop::PastEnd);
        }
        self.0 = &self.0[n as usize..];
        Ok(())
    }

    fn left(&self) -> u64 {
        self.0.len() as u64
    }
}

/// A struct read from a stream holding `left` more bytes (a page header: the rest of the
/// file).
pub(crate) struct Stream<R> {
    pub(crate) reader: R,
    pub(crate) left: u64,
}

impl<R: std::io::Read> Source for Stream<R> {
    fn byte(&mut self) -> Result<u8, Stop> {
        let mut b = [0u8];
        if self.left == 0 {
            return Err(Stop::PastEnd);
        }
        self.reader.read_exact(&mut b).map_err(Stop::Io)?;
        self.left -= 1;
        Ok(b[0])
    }

    fn advance(&mut self, n: u64) -> Result<(), Stop> {
        if n > self.left {
            return Err(Stop::PastEnd);
        }
        let skipped = std::io::copy(
            &mut std::io::Read::take(&mut self.reader, n),
            &mut std::io::sink(),
        )
        .map_err(Stop::Io)?;
        if skipped != n {
            return Err(Stop::PastEnd); // the file became shorter
        }
        self.left -= n;
        Ok(())
    }

    fn left(&self) -> u64 {
        self.left
    }
}

/// The deepest nesting walked (parquet's own skip stops at 64 levels).
const MAX_DEPTH: usize = 64;

/// Walks the compact-protocol struct at the start of `src` to its end.
pub(crate) fn walk_struct(src: &mut impl Source) -> Result<(), Stop> {
    skip(src, 12, 0)
}

/// Walks the footer's `FileMetaData` like [`walk_struct`], also checking its schema: a
/// schema element declaring more children than the schema has elements is refused (parquet
/// 60 reserves room for them before reading any: a footer declaring 2^30 children made it
/// allocate 8 GiB, found by `fuzz/` as out-of-memory; where the allocation fails, the
/// process aborts).
pub(crate) fn walk_footer(src: &mut impl Source) -> Result<(), Stop> {
    fields(src, 1, |src, id, ty| {
        if (id, ty) != (2, 9) {
            return Ok(false);
        }
        // FileMetaData.schema: list<SchemaElement>.
        let (element, count) = list_header(src)?;
        if element == 12 {
            if count > src.left() {
                return Err(Stop::PastEnd);
            }
            for _ in 0..count {
                schema_element(src, count)?;
            }
        } else {
            list_elements(src, element, count, 1)?;
        }
        Ok(true)
    })
}

/// One `SchemaElement`, whose `num_children` (field 5, i32) may not exceed `elements`.
fn schema_element(src: &mut impl Source, elements: u64) -> Result<(), Stop> {
    fields(src, 2, |src, id, ty| {
        if (id, ty) != (5, 5) {
            return Ok(false);
        }
        let children = zigzag(varint(src)?) as i32; // parquet truncates as well
        if children > 0 && children as u64 > elements {
            return Err(Stop::Refused(format!(
                "a schema element with {children} children in a schema of {elements} elements"
            )));
        }
        Ok(true)
    })
}

/// Walks the fields of the struct at the start of `src` (its fields at nesting `depth`) to
/// its end: `visit(src, id, type)` reads a field it wants and says true, or says false to
/// have it skipped.
fn fields<S: Source>(
    src: &mut S,
    depth: usize,
    mut visit: impl FnMut(&mut S, i64, u8) -> Result<bool, Stop>,
) -> Result<(), Stop> {
    let mut id = 0i64;
    loop {
        let header = src.byte()?;
        let ty = header & 0x0f;
        if ty == 0 {
            return Ok(());
        }
        id = field_id(src, header, id)?;
        if !visit(src, id, ty)? {
            skip(src, ty, depth)?;
        }
    }
}

/// The id of the field whose header byte is `header`, after the field `last`.
fn field_id(src: &mut impl Source, header: u8, last: i64) -> Result<i64, Stop> {
    match header >> 4 {
        0 => Ok(i64::from(zigzag(varint(src)?) as i16)), // parquet truncates as well
        delta => Ok(last + i64::from(delta)),
    }
}

fn zigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// A list or set header: element type and count (an empty list may have type 0).
fn list_header(src: &mut impl Source) -> Result<(u8, u64), Stop> {
    let header = src.byte()?;
    if header == 0 {
        return Ok((3, 0));
    }
    let count = match header >> 4 {
        15 => varint(src)?,
        n => u64::from(n),
    };
    Ok((header & 0x0f, count))
}

/// The elements of a list or set; one of booleans is refused (see the module docs).
fn list_elements(src: &mut impl Source, element: u8, count: u64, depth: usize) -> Result<(), Stop> {
    if matches!(element, 1 | 2) && count > 0 {
        return Err(Stop::Refused(format!(
            "a list of {count} booleans (no Parquet footer or page header has one)"
        )));
    }
    elements(src, count, &[element], depth)
}

fn varint(src: &mut impl Source) -> Result<u64, Stop> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let b = src.byte()?;
        value |= u64::from(b & 0x7f).wrapping_shl(shift);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Stop::Refused("a varint longer than 10 bytes".into()))
}

/// Steps over a value of compact-protocol type `ty` (field types: 1 and 2 are the booleans
/// of a field header, which carry no bytes).
fn skip(src: &mut impl Source, ty: u8, depth: usize) -> Result<(), Stop> {
    if depth > MAX_DEPTH {
        return Err(Stop::Refused(format!(
            "thrift structs nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match ty {
        1 | 2 => Ok(()),
        3 => src.advance(1),
        4..=6 => varint(src).map(|_| ()),
        7 => src.advance(8),
        8 => {
            let len = varint(src)?;
            src.advance(len)
        }
        9 | 10 => {
            let (element, count) = list_header(src)?;
            list_elements(src, element, count, depth)
        }
        11 => {
            let count = varint(src)?;
            if count == 0 {
                return Ok(());
            }
            let kv = src.byte()?;
            let (key, value) = (kv >> 4, kv & 0x0f);
            if matches!(key, 1 | 2) && matches!(value, 1 | 2) {
                return Err(Stop::Refused(format!(
                    "a map of {count} booleans to booleans (no Parquet footer or page header has one)"
                )));
            }
            elements(src, count, &[key, value], depth)
        }
        12 => fields(src, depth + 1, |_, _, _| Ok(false)),
        13 => src.advance(16),
        other => Err(Stop::Refused(format!("thrift type {other}"))),
    }
}

/// Steps over `count` elements made of values of `types` each (not all booleans, which
/// parquet skips without reading): every one takes at least a byte, so a count beyond the
/// bytes left runs past the end at once.
fn elements(src: &mut impl Source, count: u64, types: &[u8], depth: usize) -> Result<(), Stop> {
    if count > src.left() {
        return Err(Stop::PastEnd);
    }
    for _ in 0..count {
        for &ty in types {
            if !matches!(ty, 1..=13) {
                return Err(Stop::Refused(format!("list element type {ty}")));
            }
            skip(src, ty, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk of `bytes`: the bytes left after the struct, or why it stopped.
    fn walk(bytes: &[u8]) -> Result<usize, String> {
        let mut src = Slice(bytes);
        match walk_struct(&mut src) {
            Ok(()) => Ok(src.0.len()),
            Err(Stop::PastEnd) => Err("past the end".into()),
            Err(Stop::Refused(why)) => Err(why),
            Err(Stop::Io(e)) => Err(e.to_string()),
        }
    }

    /// A struct holding field 100 (long form) of type `ty` with `value`, then field 101 (a
    /// delta) an i32, then the stop byte.
    fn with_field(ty: u8, value: &[u8]) -> Vec<u8> {
        let mut s = vec![ty, 0xC8, 0x01]; // field id 100, zigzag
        s.extend_from_slice(value);
        s.extend_from_slice(&[0x15, 0x04, 0x00]); // field delta 1, i32 2, stop
        s
    }

    #[test]
    fn walks_what_parquet_writes() {
        // i32, binary "ab", a list of 2 i64, a struct with a boolean field, a double.
        let mut s = vec![0x15, 0x2a, 0x18, 0x02, b'a', b'b', 0x19, 0x26, 0x02, 0x04];
        s.extend_from_slice(&[0x1c, 0x11, 0x00, 0x17]);
        s.extend_from_slice(&1.5f64.to_le_bytes());
        s.push(0x00);
        assert_eq!(walk(&s), Ok(0));
        let mut more = s.clone();
        more.extend_from_slice(b"page data");
        assert_eq!(walk(&more), Ok(9), "stops at its end");
        for cut in 0..s.len() {
            assert_eq!(walk(&s[..cut]), Err("past the end".into()), "cut at {cut}");
        }
        let list = with_field(0x09, &[0x28, 0x00, 0x00]); // a list of two empty binaries
        assert_eq!(walk(&list), Ok(0));
        // The same through a stream that knows how many bytes the file has left.
        let mut src = Stream {
            reader: std::io::Cursor::new(more.clone()),
            left: more.len() as u64,
        };
        walk_struct(&mut src).unwrap();
        assert_eq!(src.left, 9);
    }

    #[test]
    fn refuses_containers_of_booleans_whatever_their_size() {
        // The fuzz input's shape: a list of 2^31 - 1 booleans, the size in a varint.
        let huge = with_field(0x09, &[0xF1, 0xFF, 0xFF, 0xFF, 0xFF, 0x07]);
        let why = walk(&huge).unwrap_err();
        assert!(why.contains("a list of 2147483647 booleans"), "{why}");
        for (ty, list) in [(0x09, [0x11]), (0x0A, [0x32])] {
            assert!(
                walk(&with_field(ty, &list))
                    .unwrap_err()
                    .contains("booleans")
            );
        }
        let map = with_field(0x0B, &[0xFF, 0xFF, 0x03, 0x12]);
        assert!(
            walk(&map)
                .unwrap_err()
                .contains("map of 65535 booleans to booleans")
        );
        // Booleans to bytes: every entry takes a byte, so it is walked (here: 2 entries).
        let map = with_field(0x0B, &[0x02, 0x13, 0x07, 0x08]);
        assert_eq!(walk(&map), Ok(0));
        let map = with_field(0x0B, &[0xFF, 0xFF, 0x03, 0x13, 0x07]);
        assert_eq!(walk(&map), Err("past the end".into()));
        // A huge list of other elements needs its bytes: the walk ends, it does not loop.
        let big = with_field(0x09, &[0xF5, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0x01]);
        assert_eq!(walk(&big), Err("past the end".into()));
        let mut src = Stream {
            reader: std::io::Cursor::new(big.clone()),
            left: 1 << 40,
        };
        assert!(
            matches!(walk_struct(&mut src), Err(Stop::Io(_))),
            "short file"
        );
    }

    /// A `FileMetaData` holding version 1 and a schema of a root with `children` children
    /// and one leaf.
    fn footer(children: u32) -> Vec<u8> {
        let mut s = vec![0x15, 0x02, 0x19, 0x2C]; // version 1; schema: a list of 2 structs
        let mut root = vec![0x48, 0x01, b'r', 0x15]; // name (field 4) "r", num_children
        let mut v = u64::from(children) << 1;
        while v >= 0x80 {
            root.push(v as u8 | 0x80);
            v >>= 7;
        }
        root.push(v as u8);
        root.push(0x00);
        s.extend_from_slice(&root);
        s.extend_from_slice(&[0x15, 0x02, 0x38, 0x01, b'x', 0x00]); // type, name "x"
        s.push(0x00);
        s
    }

    #[test]
    fn refuses_a_schema_element_with_more_children_than_the_schema_has() {
        let walk_footer_of = |bytes: &[u8]| {
            let mut src = Slice(bytes);
            walk_footer(&mut src)
                .map(|()| src.0.len())
                .map_err(|stop| match stop {
                    Stop::Refused(why) => why,
                    other => format!("{other:?}"),
                })
        };
        assert_eq!(walk_footer_of(&footer(1)), Ok(0));
        assert_eq!(walk(&footer(1)), Ok(0), "a struct like any other");
        let why = walk_footer_of(&footer(1 << 30)).unwrap_err();
        assert!(
            why.contains("1073741824 children in a schema of 2 elements"),
            "{why}"
        );
        assert!(walk_footer_of(&footer(3)).is_err());
        // parquet reads the i32 from a longer varint by truncating it: so does the walk
        // (the fuzz input's -16106127360 is 2^30 children).
        let mut long = footer(1);
        let at = long.windows(2).position(|w| w == [0x15, 0x02]).unwrap();
        let mut huge = Vec::new();
        let mut v = 32212254719u64; // zigzag of -16106127360
        while v >= 0x80 {
            huge.push(v as u8 | 0x80);
            v >>= 7;
        }
        huge.push(v as u8);
        let at = at
            + 2
            + long[at + 2..]
                .windows(2)
                .position(|w| w == [0x15, 0x02])
                .unwrap();
        long.splice(at + 1..at + 2, huge);
        let why = walk_footer_of(&long).unwrap_err();
        assert!(why.contains("1073741824 children"), "{why}");
    }

    #[test]
    fn refuses_nesting_deeper_than_parquet_skips() {
        let mut s = vec![0x1C; 100]; // field delta 1, a struct, 100 times
        s.extend(std::iter::repeat_n(0u8, 101));
        assert!(walk(&s).unwrap_err().contains("nested deeper than 64"));
    }
}
