//! A sled path that held nothing before this run (missing, or an empty directory), so that
//! what a failed `import` created there can be taken away again: a failed import leaves no
//! new store behind.

use std::io;
use std::path::{Path, PathBuf};

/// A sled path that held nothing when the run began.
#[derive(Debug)]
pub enum NewStore {
    /// Nothing was at the path: the directory is removed.
    Missing(PathBuf),
    /// An empty directory was: what is in it is removed, the directory stays.
    EmptyDirectory(PathBuf),
}

impl NewStore {
    /// The path, if it holds nothing now (a file, or a directory with anything in it, is
    /// `None`: nothing there may ever be removed).
    pub fn at(path: &Path) -> Option<Self> {
        match std::fs::read_dir(path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Some(Self::Missing(path.to_owned()))
            }
            Ok(mut entries) => entries
                .next()
                .is_none()
                .then(|| Self::EmptyDirectory(path.to_owned())),
            Err(_) => None,
        }
    }

    /// Takes away what this run created at the path (call it once the store is closed).
    pub fn remove(&self) -> io::Result<()> {
        match self {
            Self::Missing(path) => std::fs::remove_dir_all(path),
            Self::EmptyDirectory(path) => {
                for entry in std::fs::read_dir(path)? {
                    let entry = entry?;
                    if entry.file_type()?.is_dir() {
                        std::fs::remove_dir_all(entry.path())?;
                    } else {
                        std::fs::remove_file(entry.path())?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        match self {
            Self::Missing(path) | Self::EmptyDirectory(path) => path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_path_that_held_nothing_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let Some(new) = NewStore::at(&missing) else {
            panic!("a missing path is new");
        };
        std::fs::create_dir_all(missing.join("db")).unwrap();
        std::fs::write(missing.join("conf"), "x").unwrap();
        new.remove().unwrap();
        assert!(!missing.exists());

        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let Some(new) = NewStore::at(&empty) else {
            panic!("an empty directory is new");
        };
        std::fs::create_dir_all(empty.join("db")).unwrap();
        std::fs::write(empty.join("conf"), "x").unwrap();
        new.remove().unwrap();
        assert!(empty.is_dir());
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

        std::fs::write(empty.join("kept"), "x").unwrap();
        assert!(NewStore::at(&empty).is_none());
        assert!(NewStore::at(&empty.join("kept")).is_none());
    }
}
