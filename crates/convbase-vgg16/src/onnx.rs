//! A small reader for the parts of an ONNX file that hold weights: ModelProto.graph (field 7)
//! -> GraphProto.initializer (field 5) -> TensorProto (dims 1, data_type 2, float_data 4,
//! name 8, raw_data 9, data_location 14). Everything else is skipped by wire type, so no
//! protoc and no generated code are needed.

/// One initializer, borrowing its bytes from the file.
#[derive(Debug)]
pub(crate) struct Initializer<'a> {
    pub name: String,
    pub dims: Vec<i64>,
    /// ONNX TensorProto.DataType; 1 = FLOAT.
    pub data_type: i32,
    pub raw_data: Option<&'a [u8]>,
    pub float_data: Vec<f32>,
    /// data_location == EXTERNAL: the values live in another file.
    pub external: bool,
}

/// Data type code of float32 in ONNX.
pub(crate) const ONNX_FLOAT: i32 = 1;

impl Initializer<'_> {
    /// The values as f32, whether stored in `raw_data` (little-endian) or `float_data`.
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        let n: usize = self
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
            .product::<Result<usize, String>>()?;
        let values = match self.raw_data {
            Some(raw) => {
                if raw.len() != n * 4 {
                    return Err(format!(
                        "raw_data holds {} bytes, dims {:?} need {}",
                        raw.len(),
                        self.dims,
                        n * 4
                    ));
                }
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
            None => self.float_data.clone(),
        };
        if values.len() != n {
            return Err(format!(
                "holds {} values, dims {:?} need {n}",
                values.len(),
                self.dims
            ));
        }
        Ok(values)
    }
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the file, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at byte {}", self.base + self.pos)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// Next (field number, wire type), or None at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, String> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, (k & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Result<Reader<'a>, String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                self.err(&format!(
                    "field of {n} bytes runs past the end (truncated file?)"
                ))
            })?;
        let sub = Reader::new(&self.buf[self.pos..end], self.base + self.pos);
        self.pos = end;
        Ok(sub)
    }

    fn len_delimited(&mut self) -> Result<Reader<'a>, String> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.err("length overflows"))?;
        self.take(n)
    }

    fn skip(&mut self, wire: u8) -> Result<(), String> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            w => Err(self.err(&format!("unsupported protobuf wire type {w}"))),
        }
    }
}

/// Reads every initializer of the model's graph.
pub(crate) fn initializers(file: &[u8]) -> Result<Vec<Initializer<'_>>, String> {
    let mut model = Reader::new(file, 0);
    let mut out = Vec::new();
    let mut graphs = 0;
    while let Some((field, wire)) = model.key()? {
        if field == 7 && wire == LEN {
            graphs += 1;
            let mut graph = model.len_delimited()?;
            while let Some((field, wire)) = graph.key()? {
                if field == 5 && wire == LEN {
                    out.push(tensor(graph.len_delimited()?)?);
                } else {
                    graph.skip(wire)?;
                }
            }
        } else {
            model.skip(wire)?;
        }
    }
    if graphs == 0 {
        return Err("no graph in the file (not an ONNX model?)".into());
    }
    Ok(out)
}

fn tensor(mut r: Reader<'_>) -> Result<Initializer<'_>, String> {
    let mut t = Initializer {
        name: String::new(),
        dims: Vec::new(),
        data_type: 0,
        raw_data: None,
        float_data: Vec::new(),
        external: false,
    };
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, VARINT) => t.dims.push(r.varint()? as i64),
            (1, LEN) => {
                let mut packed = r.len_delimited()?;
                while packed.pos < packed.buf.len() {
                    t.dims.push(packed.varint()? as i64);
                }
            }
            (2, VARINT) => t.data_type = r.varint()? as i32,
            (4, FIXED32) => {
                let b = r.take(4)?.buf;
                t.float_data
                    .push(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
            (4, LEN) => {
                let packed = r.len_delimited()?;
                if packed.buf.len() % 4 != 0 {
                    return Err(packed.err("packed float_data not a multiple of 4 bytes"));
                }
                t.float_data.extend(
                    packed
                        .buf
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            (8, LEN) => {
                let s = r.len_delimited()?;
                t.name = String::from_utf8(s.buf.to_vec())
                    .map_err(|_| s.err("initializer name is not UTF-8"))?;
            }
            (9, LEN) => t.raw_data = Some(r.len_delimited()?.buf),
            (14, VARINT) => t.external = r.varint()? == 1,
            _ => r.skip(wire)?,
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn len_field(field: u64, body: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    /// A hand-encoded model: one graph, one node to skip, two initializers (raw and packed float).
    fn model() -> Vec<u8> {
        let mut t1 = Vec::new();
        varint(1 << 3, &mut t1);
        varint(2, &mut t1); // dims: 2 (unpacked)
        varint(2 << 3, &mut t1);
        varint(1, &mut t1); // FLOAT
        len_field(8, b"a/w", &mut t1);
        let raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        len_field(9, &raw, &mut t1);
        let mut t2 = Vec::new();
        len_field(1, &[1, 1], &mut t2); // packed dims [1, 1]
        len_field(8, b"b", &mut t2);
        len_field(4, &7.25f32.to_le_bytes(), &mut t2);
        let mut graph = Vec::new();
        len_field(1, b"\x0a\x01x", &mut graph); // a node, skipped
        len_field(5, &t1, &mut graph);
        len_field(5, &t2, &mut graph);
        let mut m = Vec::new();
        varint(1 << 3, &mut m);
        varint(7, &mut m); // ir_version
        len_field(7, &graph, &mut m);
        m
    }

    #[test]
    fn reads_raw_and_packed_initializers() {
        let m = model();
        let inits = initializers(&m).unwrap();
        assert_eq!(inits.len(), 2);
        assert_eq!(inits[0].name, "a/w");
        assert_eq!(inits[0].dims, [2]);
        assert_eq!(inits[0].data_type, ONNX_FLOAT);
        assert_eq!(inits[0].to_f32().unwrap(), [1.5, -2.0]);
        assert_eq!(inits[1].dims, [1, 1]);
        assert_eq!(inits[1].to_f32().unwrap(), [7.25]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let m = model();
        for n in 0..m.len() {
            let r = initializers(&m[..n]);
            // A prefix may end exactly between fields of the model, but then the graph is missing.
            assert!(r.is_err(), "prefix of {n} bytes parsed");
        }
    }
}
