//! Snapshots on disk, until the Raft log of #4 takes over durability: written on a
//! timer when something changed and on shutdown, loaded at start.
//!
//! A snapshot is written to a temporary file, fsynced, renamed over the old one and the
//! directory fsynced, so a crash leaves either the old snapshot or the new one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use shoal_engine::Engine;

const FILE: &str = "shoal.snapshot";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The engine saved in `dir`, or a new one when there is none.
pub fn load(dir: &Path) -> Result<Engine> {
    let file = path(dir);
    match fs::read(&file) {
        Ok(bytes) => Engine::restore(&bytes).with_context(|| format!("loading {}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Engine::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Writes `bytes` as the snapshot in `dir`, atomically.
pub fn save(dir: &Path, bytes: &[u8]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomically(&path(dir), bytes)
}

/// Replaces `file` by `bytes` so that a crash leaves the old content or the new.
pub fn write_atomically(file: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, file).with_context(|| format!("renaming {}", tmp.display()))?;
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all()?,
        Some(_) | None => File::open(".")?.sync_all()?,
    }
    Ok(())
}
