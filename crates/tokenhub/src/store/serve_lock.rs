//! SQLite is single-node: one `serve` per database file. The serving process holds an exclusive
//! lock on `<file>.lock` for its whole life (the OS drops it when the process ends, however it
//! ends), so a second `serve` on the same file is refused at start, and only the holder may take
//! the file's leftover claims back (`Store::release_stale_claims`).

use super::{sqlite_path, StoreError};
use std::fs::{File, OpenOptions};

/// The lock held while this process serves an SQLite file; released when dropped.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

impl ServeLock {
    /// Takes the lock of the SQLite file `database_url` names; `None` for PostgreSQL (many nodes
    /// may serve one database). [`StoreError::AlreadyServed`] when another process holds it.
    pub fn take(database_url: &str) -> Result<Option<Self>, StoreError> {
        let Some(path) = sqlite_path(database_url) else {
            return Ok(None);
        };
        let lock_path = format!("{path}.lock");
        if let Some(folder) = std::path::Path::new(&path).parent() {
            if !folder.as_os_str().is_empty() {
                std::fs::create_dir_all(folder)
                    .map_err(|e| StoreError::Folder(folder.display().to_string(), e))?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Lock(lock_path.clone(), e.to_string()))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(fs4::TryLockError::WouldBlock) => Err(StoreError::AlreadyServed(path, lock_path)),
            Err(fs4::TryLockError::Error(e)) => Err(StoreError::Lock(lock_path, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("sub/hub.db").display());
        let first = ServeLock::take(&url).unwrap().expect("an SQLite lock");
        match ServeLock::take(&url) {
            Err(StoreError::AlreadyServed(path, lock)) => {
                assert!(path.ends_with("hub.db") && lock.ends_with("hub.db.lock"));
            }
            other => panic!("refused: {other:?}"),
        }
        drop(first);
        assert!(ServeLock::take(&url).unwrap().is_some());
        assert!(ServeLock::take("postgres://h/db").unwrap().is_none());
    }
}
