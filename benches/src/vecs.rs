//! Reading benchmark data: TEXMEX `.fvecs` / `.ivecs` (each row: i32 dim, then dim values)
//! and NumPy `.npy` (through the npyz crate).

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Row-major matrix.
#[derive(Debug, Clone)]
pub struct Matrix<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

impl<T> Matrix<T> {
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

fn is_npy(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "npy")
}

/// Reads float vectors from `.fvecs` or `.npy`.
pub fn read_vectors(path: &Path) -> Result<Matrix<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if is_npy(path) {
        let npy = npyz::NpyFile::new(&bytes[..])?;
        let shape = npy.shape().to_vec();
        let data: Vec<f32> = npy.into_vec()?;
        return to_matrix(shape, data, path);
    }
    let raw = texmex(&bytes, path)?;
    Ok(Matrix {
        rows: raw.rows,
        cols: raw.cols,
        data: raw.data.into_iter().map(f32::from_bits).collect(),
    })
}

/// Reads id lists from `.ivecs` or `.npy`.
pub fn read_ids(path: &Path) -> Result<Matrix<u32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if is_npy(path) {
        let npy = npyz::NpyFile::new(&bytes[..])?;
        let shape = npy.shape().to_vec();
        let data: Vec<i64> = match npy.into_vec::<i64>() {
            Ok(v) => v,
            Err(_) => npyz::NpyFile::new(&bytes[..])?
                .into_vec::<i32>()?
                .into_iter()
                .map(i64::from)
                .collect(),
        };
        let data = data
            .into_iter()
            .map(|x| u32::try_from(x).context("negative or huge id in ground truth"))
            .collect::<Result<Vec<u32>>>()?;
        return to_matrix(shape, data, path);
    }
    texmex(&bytes, path)
}

fn to_matrix<T>(shape: Vec<u64>, data: Vec<T>, path: &Path) -> Result<Matrix<T>> {
    match shape.as_slice() {
        [rows, cols] => Ok(Matrix {
            rows: *rows as usize,
            cols: *cols as usize,
            data,
        }),
        other => bail!(
            "{}: expected a 2-d array, got shape {other:?}",
            path.display()
        ),
    }
}

/// Parses TEXMEX rows of 4-byte values.
fn texmex(bytes: &[u8], path: &Path) -> Result<Matrix<u32>> {
    if bytes.len() < 4 {
        bail!("{}: empty file", path.display());
    }
    let cols = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let row_bytes = 4 * (cols + 1);
    if cols == 0 || !bytes.len().is_multiple_of(row_bytes) {
        bail!("{}: not a TEXMEX file of dimension {cols}", path.display());
    }
    let rows = bytes.len() / row_bytes;
    let mut data = Vec::with_capacity(rows * cols);
    for row in bytes.chunks_exact(row_bytes) {
        if u32::from_le_bytes([row[0], row[1], row[2], row[3]]) as usize != cols {
            bail!("{}: rows of different dimensions", path.display());
        }
        data.extend(
            row[4..]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok(Matrix { rows, cols, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fvecs_round_trip() {
        let dir = std::env::temp_dir().join(format!("shoal-vecs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.fvecs");
        let mut bytes = Vec::new();
        for row in [[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.5]] {
            bytes.extend_from_slice(&3u32.to_le_bytes());
            row.iter()
                .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        }
        std::fs::write(&path, &bytes).unwrap();
        let m = read_vectors(&path).unwrap();
        assert_eq!((m.rows, m.cols), (2, 3));
        assert_eq!(m.row(1), &[4.0, 5.0, 6.5]);
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        assert!(read_vectors(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
