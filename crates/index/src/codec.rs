//! The byte format shared by both index kinds: a header with a format version, a body, and
//! a CRC-32 trailer. Decoding never trusts a length it has not checked against the bytes
//! that remain, so a truncated or corrupted stream is an error, never a panic or a huge
//! allocation.
//!
//! ```text
//! magic "SHOALVX\0" | version u32 | kind u8 | metric u8 | dim u32 | body ... | crc32 u32
//! ```
//! All integers are little-endian; the CRC covers every byte before it.

use std::io::Read;

use crate::error::{IndexError, Result};
use crate::metric::Metric;

pub(crate) const MAGIC: &[u8; 8] = b"SHOALVX\0";
/// Bumped whenever the layout changes; older readers refuse newer streams.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Which index a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Flat,
    Hnsw,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Flat => 0,
            Kind::Hnsw => 1,
        }
    }
}

/// Accumulates a stream in memory so the CRC can be appended.
#[derive(Debug)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(kind: Kind, metric: Metric, dim: usize) -> Encoder {
        let mut e = Encoder { buf: Vec::new() };
        e.buf.extend_from_slice(MAGIC);
        e.u32(FORMAT_VERSION);
        e.u8(kind.code());
        e.u8(metric.code());
        e.u32(dim as u32);
        e
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn f32s(&mut self, vs: &[f32]) {
        self.buf.reserve(vs.len() * 4);
        vs.iter().for_each(|v| self.f32(*v));
    }
    /// Appends the CRC and returns the finished stream. Callers write it out after
    /// releasing their locks, so a slow writer never stalls the index.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let crc = crc32fast::hash(&self.buf);
        self.u32(crc);
        self.buf
    }
}

/// The validated header of a stream and a cursor over its body.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    pub(crate) kind: Kind,
    pub(crate) metric: Metric,
    pub(crate) dim: usize,
    body: &'a [u8],
}

fn corrupt(what: impl Into<String>) -> IndexError {
    IndexError::Corrupt(what.into())
}

/// Reads a whole stream into memory.
pub(crate) fn read_all(r: &mut dyn Read) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl<'a> Decoder<'a> {
    /// Checks magic, version and CRC, and parses the header.
    pub(crate) fn open(bytes: &'a [u8]) -> Result<Decoder<'a>> {
        let header = MAGIC.len() + 4 + 1 + 1 + 4;
        if bytes.len() < header + 4 {
            return Err(corrupt("stream is shorter than its header"));
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a Shoal index stream (bad magic)"));
        }
        let (payload, trailer) = bytes.split_at(bytes.len() - 4);
        let mut crc = [0u8; 4];
        crc.copy_from_slice(trailer);
        if crc32fast::hash(payload) != u32::from_le_bytes(crc) {
            return Err(corrupt("checksum mismatch (truncated or corrupted stream)"));
        }
        let mut d = Decoder {
            kind: Kind::Flat,
            metric: Metric::L2,
            dim: 0,
            body: &payload[MAGIC.len()..],
        };
        let version = d.u32()?;
        if version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        d.kind = match d.u8()? {
            0 => Kind::Flat,
            1 => Kind::Hnsw,
            k => return Err(corrupt(format!("unknown index kind {k}"))),
        };
        d.metric = Metric::from_code(d.u8()?).ok_or_else(|| corrupt("unknown metric"))?;
        d.dim = d.u32()? as usize;
        if d.dim == 0 || d.dim > crate::MAX_DIM {
            return Err(corrupt(format!("dimension {} out of range", d.dim)));
        }
        Ok(d)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.body.len() < n {
            return Err(corrupt("stream ends in the middle of a record"));
        }
        let (head, rest) = self.body.split_at(n);
        self.body = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    pub(crate) fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_bits(self.u32()?))
    }
    /// Reads `n` finite floats into `out`.
    pub(crate) fn f32s(&mut self, n: usize, out: &mut Vec<f32>) -> Result<()> {
        let bytes = self.take(n.checked_mul(4).ok_or_else(|| corrupt("length overflow"))?)?;
        out.clear();
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        if out.iter().any(|x| !x.is_finite()) {
            return Err(corrupt("non-finite vector component"));
        }
        Ok(())
    }
    /// Fails unless at least `count` records of `min_bytes` each remain: guards allocations
    /// sized from counts in the stream.
    pub(crate) fn expect_records(&self, count: u64, min_bytes: u64) -> Result<()> {
        match count.checked_mul(min_bytes) {
            Some(need) if need <= self.body.len() as u64 => Ok(()),
            Some(_) | None => Err(corrupt(format!(
                "stream claims {count} records but is too short for them"
            ))),
        }
    }
    /// Fails if bytes remain after the body.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.body.is_empty() {
            Ok(())
        } else {
            Err(corrupt("trailing bytes after the index body"))
        }
    }
}
