//! The byte format: a round trip gives back an index that answers identically; a
//! truncated or corrupted stream is an error, never a panic or a wrong index.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

mod common;

use common::*;
use shoal_index::{build, deserialize, IndexError, Metric, VectorIndex};

fn serialized(index: &dyn VectorIndex) -> Vec<u8> {
    let mut out = Vec::new();
    index.serialize(&mut out).unwrap();
    out
}

fn assert_same_answers(a: &dyn VectorIndex, b: &dyn VectorIndex, queries: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.dim(), b.dim());
    assert_eq!(a.metric(), b.metric());
    for q in queries {
        assert_eq!(
            a.search(q, 10, Some(40), None).unwrap(),
            b.search(q, 10, Some(40), None).unwrap()
        );
    }
}

#[test]
fn round_trips_preserve_answers() {
    let data = clustered(3_000, 16, 10, 31);
    let queries = clustered(30, 16, 10, 32);
    for config in [
        hnsw_config(16, Metric::Cosine, 100),
        flat_config(16, Metric::Ip, 100),
    ] {
        let index = build(&config).unwrap();
        fill(index.as_ref(), &data);
        // Tombstones and freed slots must survive too.
        for i in (0..3_000u32).step_by(7) {
            index.remove(i).unwrap();
        }
        let bytes = serialized(index.as_ref());
        let back = deserialize(&mut bytes.as_slice()).unwrap();
        assert_same_answers(index.as_ref(), back.as_ref(), &queries);
        assert!(!back.contains(7) && back.contains(8));
        // The loaded index keeps working: writes, deletes and a second round trip.
        back.add(7, &data[7]).unwrap();
        back.remove(8).unwrap();
        let again = deserialize(&mut serialized(back.as_ref()).as_slice()).unwrap();
        assert_same_answers(back.as_ref(), again.as_ref(), &queries);
    }
}

#[test]
fn truncated_streams_are_errors() {
    let data = clustered(300, 8, 4, 33);
    for config in [
        hnsw_config(8, Metric::L2, 10),
        flat_config(8, Metric::L2, 10),
    ] {
        let index = build(&config).unwrap();
        fill(index.as_ref(), &data);
        let bytes = serialized(index.as_ref());
        for cut in (0..bytes.len())
            .step_by(bytes.len() / 97 + 1)
            .chain([bytes.len() - 1])
        {
            let result = deserialize(&mut &bytes[..cut]);
            assert!(
                matches!(result, Err(IndexError::Corrupt(_))),
                "cut at {cut} accepted"
            );
        }
    }
}

#[test]
fn flipped_bits_are_errors() {
    let data = clustered(200, 8, 4, 34);
    let index = build(&hnsw_config(8, Metric::L2, 10)).unwrap();
    fill(index.as_ref(), &data);
    let bytes = serialized(index.as_ref());
    for pos in (0..bytes.len()).step_by(bytes.len() / 211 + 1) {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x10;
        assert!(
            deserialize(&mut bad.as_slice()).is_err(),
            "flip at {pos} accepted"
        );
    }
}

/// Re-seals a modified payload with a valid CRC, so only the structural checks stand
/// between it and a wrong index.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len() - 4;
    let crc = crc32(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// CRC-32 (IEEE), bit by bit: the test's own, independent of the crate under test.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn structurally_invalid_streams_with_valid_checksums_are_errors() {
    let index = build(&hnsw_config(2, Metric::L2, 4)).unwrap();
    for (i, v) in [[0.0f32, 1.0], [1.0, 0.0], [1.0, 1.0]].iter().enumerate() {
        index.add(i as u32, v).unwrap();
    }
    let good = serialized(index.as_ref());
    assert!(deserialize(&mut reseal(good.clone()).as_slice()).is_ok());

    // Header (18) + params (40) + slot count (4) + entry (8): slot 0's label is at 70,
    // its level at 74, its level-0 count at 75 and its first link at 79.
    let mut bad_link = good.clone();
    bad_link[79..83].copy_from_slice(&999u32.to_le_bytes());
    let mut bad_count = good.clone();
    bad_count[75..79].copy_from_slice(&1_000u32.to_le_bytes());
    let mut bad_version = good.clone();
    bad_version[8..12].copy_from_slice(&99u32.to_le_bytes());
    let mut bad_kind = good.clone();
    bad_kind[12] = 7;
    let mut bad_entry = good.clone();
    bad_entry[62..70].copy_from_slice(&u64::MAX.to_le_bytes());
    // A slot count the stream cannot hold: decoding must refuse before allocating for it.
    let mut bad_slots = good.clone();
    bad_slots[58..62].copy_from_slice(&1_000_000u32.to_le_bytes());
    let mut bad_m = good.clone();
    bad_m[18..22].copy_from_slice(&0u32.to_le_bytes());
    for (what, bytes) in [
        ("link", bad_link),
        ("count", bad_count),
        ("version", bad_version),
        ("kind", bad_kind),
        ("entry", bad_entry),
        ("M", bad_m),
        ("slot count", bad_slots),
    ] {
        let result = deserialize(&mut reseal(bytes).as_slice());
        assert!(
            matches!(result, Err(IndexError::Corrupt(_))),
            "bad {what} accepted: {result:?}"
        );
    }
    assert!(matches!(
        deserialize(&mut &b"not an index at all"[..]),
        Err(IndexError::Corrupt(_))
    ));
}
