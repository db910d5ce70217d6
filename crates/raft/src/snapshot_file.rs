//! A group's snapshot on disk: openraft's metadata and the engine's own snapshot bytes in
//! one file, replaced atomically.
//!
//! ```text
//! "SHOALSNP" | version u32 LE | meta length u32 LE | postcard(SnapshotMeta) | crc32(meta) u32 LE
//! | engine snapshot (SHOALENG, carries its own CRC)
//! ```
//!
//! The file, opened, is the snapshot data openraft hands to the network: a follower
//! receives the same bytes, checks them, and keeps them as its own current snapshot.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::RaftError;
use crate::log_store::{decode, encode};
use crate::types::SnapshotMeta;

const MAGIC: &[u8; 8] = b"SHOALSNP";
const VERSION: u32 = 1;
const CURRENT: &str = "snapshot";

/// The path of the current snapshot in a group directory.
pub(crate) fn current_path(dir: &Path) -> PathBuf {
    dir.join(CURRENT)
}

/// Writes `meta` and `engine` as the group's current snapshot (durably), and returns it
/// opened for reading.
pub(crate) fn write(dir: &Path, meta: &SnapshotMeta, engine: &[u8]) -> io::Result<File> {
    fs::create_dir_all(dir)?;
    let meta_bytes = encode(meta)?;
    let meta_len = u32::try_from(meta_bytes.len()).map_err(io::Error::other)?;
    let tmp = dir.join(format!("{CURRENT}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&VERSION.to_le_bytes())?;
        f.write_all(&meta_len.to_le_bytes())?;
        f.write_all(&meta_bytes)?;
        f.write_all(&crc32fast::hash(&meta_bytes).to_le_bytes())?;
        f.write_all(engine)?;
        f.sync_all()?;
    }
    let path = current_path(dir);
    fs::rename(&tmp, &path)?;
    // The rename is durable only once the directory entry is.
    File::open(dir)?.sync_all()?;
    File::open(path)
}

/// Reads a whole snapshot file from its start: its metadata and the engine bytes.
pub(crate) fn read(file: &mut File) -> io::Result<(SnapshotMeta, Vec<u8>)> {
    file.seek(SeekFrom::Start(0))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    let (meta, engine_at) = parse_header(&data)?;
    data.drain(..engine_at);
    Ok((meta, data))
}

/// Checks a received snapshot file end to end (header, metadata and engine checksums)
/// without building an engine from it; returns the metadata the file carries.
pub(crate) fn verify(file: &mut File) -> io::Result<SnapshotMeta> {
    let (meta, engine) = read(file)?;
    shoal_engine::snapshot::verify(&engine).map_err(|e| corrupt(e.to_string()))?;
    Ok(meta)
}

/// Opens the current snapshot of `dir`: its metadata, read from the same handle that is
/// returned (positioned at the start), so metadata and data cannot come from two
/// different files when a new snapshot replaces this one meanwhile.
pub(crate) fn open_current(dir: &Path) -> io::Result<Option<(SnapshotMeta, File)>> {
    let mut file = match File::open(current_path(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = read_meta(&mut file)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(Some((meta, file)))
}

/// Metadata longer than this is corruption, not a membership list.
const MAX_META: usize = 1 << 20;

/// Reads only the metadata of a snapshot file.
fn read_meta(file: &mut File) -> io::Result<SnapshotMeta> {
    file.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 16];
    file.read_exact(&mut head)?;
    let meta_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize;
    if meta_len > MAX_META {
        return Err(corrupt("metadata length"));
    }
    let mut rest = vec![0u8; meta_len + 4];
    file.read_exact(&mut rest)?;
    let mut whole = head.to_vec();
    whole.extend_from_slice(&rest);
    parse_header(&whole).map(|(meta, _)| meta)
}

fn corrupt(detail: impl Into<String>) -> io::Error {
    RaftError::Corrupt {
        what: "snapshot file",
        detail: detail.into(),
    }
    .into()
}

/// The metadata and where the engine bytes begin.
fn parse_header(data: &[u8]) -> io::Result<(SnapshotMeta, usize)> {
    if data.len() < 16 || &data[..8] != MAGIC {
        return Err(corrupt("not a Shoal snapshot"));
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != VERSION {
        return Err(corrupt(format!("unknown version {version}")));
    }
    let meta_len = u32::from_le_bytes([data[12], data[13], data[14], data[15]]) as usize;
    let meta_end = 16usize
        .checked_add(meta_len)
        .filter(|&end| end + 4 <= data.len())
        .ok_or_else(|| corrupt("truncated metadata"))?;
    let meta_bytes = &data[16..meta_end];
    let crc = u32::from_le_bytes([
        data[meta_end],
        data[meta_end + 1],
        data[meta_end + 2],
        data[meta_end + 3],
    ]);
    if crc32fast::hash(meta_bytes) != crc {
        return Err(corrupt("metadata checksum mismatch"));
    }
    Ok((decode(meta_bytes, "snapshot metadata")?, meta_end + 4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_engine::{Engine, Write};

    fn engine_bytes() -> Vec<u8> {
        let mut e = Engine::new();
        for i in 0..50 {
            e.apply(&Write::single(
                1,
                vec![b"SET".to_vec(), format!("k{i}").into_bytes(), b"v".to_vec()],
            ));
        }
        e.snapshot().unwrap()
    }

    #[test]
    fn round_trip_and_every_truncation_or_flip_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SnapshotMeta::default();
        let engine = engine_bytes();
        let mut file = write(dir.path(), &meta, &engine).unwrap();
        let (read_meta_back, read_engine) = read(&mut file).unwrap();
        assert_eq!(read_meta_back, meta);
        assert_eq!(read_engine, engine);
        let (current, _) = open_current(dir.path()).unwrap().unwrap();
        assert_eq!(current, meta);
        assert_eq!(verify(&mut file).unwrap(), meta);

        let whole = fs::read(current_path(dir.path())).unwrap();
        let bad_path = dir.path().join("bad");
        for cut in (0..whole.len()).step_by(whole.len() / 50 + 1) {
            fs::write(&bad_path, &whole[..cut]).unwrap();
            let mut f = File::open(&bad_path).unwrap();
            assert!(verify(&mut f).is_err(), "truncated at {cut}");
        }
        for pos in (0..whole.len()).step_by(whole.len() / 50 + 1) {
            let mut bad = whole.clone();
            bad[pos] ^= 0x10;
            fs::write(&bad_path, &bad).unwrap();
            let mut f = File::open(&bad_path).unwrap();
            assert!(verify(&mut f).is_err(), "flipped at {pos}");
        }
        assert!(open_current(&dir.path().join("absent")).unwrap().is_none());
    }
}
