//! The access-log file: a path and the file open at it, which `reopen`
//! replaces (logrotate without `copytruncate`). It knows nothing of who
//! writes lines into it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A file opened for appending at `path`, which [`reopen`](Self::reopen)
/// opens again: after logrotate renamed it, lines go to a new file at the
/// same path instead of following the old one.
#[derive(Debug)]
pub struct ReopenableFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl ReopenableFile {
    /// Opens (creating it if needed) `path` for appending.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<ReopenableFile> {
        let path = path.into();
        let file = open_append(&path)?;
        Ok(ReopenableFile {
            path,
            file: Mutex::new(file),
        })
    }

    /// The path it was opened at (and is reopened at).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again and writes there from now on. The new file is
    /// opened before the old one is let go: if that fails, writing goes on
    /// to the old file and the error is returned.
    pub fn reopen(&self) -> io::Result<()> {
        let new = open_append(&self.path)?;
        // The old file is closed after the lock is released.
        let _old = std::mem::replace(&mut *self.lock_file(), new);
        Ok(())
    }

    /// The current file, locked: a writer holding it writes whole lines,
    /// never interleaved with another's, and a reopen waits for it.
    pub fn lock(&self) -> FileGuard<'_> {
        FileGuard(self.lock_file())
    }

    fn lock_file(&self) -> MutexGuard<'_, File> {
        // A writer that panicked left the File as it was: still usable.
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The locked current file of a [`ReopenableFile`].
#[derive(Debug)]
pub struct FileGuard<'a>(MutexGuard<'a, File>);

impl Write for FileGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_line(file: &ReopenableFile, line: &str) {
        writeln!(file.lock(), "{line}").expect("write a line");
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("read the log")
    }

    #[test]
    fn after_a_move_and_reopen_lines_go_to_a_new_file_at_the_path() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("access.log");
        let moved = dir.path().join("access.log.1");
        let file = ReopenableFile::open(&path).expect("open");
        write_line(&file, "one");
        std::fs::rename(&path, &moved).expect("rotate");
        write_line(&file, "two");
        file.reopen().expect("reopen");
        write_line(&file, "three");
        assert_eq!(
            read(&moved),
            "one\ntwo\n",
            "the moved file keeps the old lines"
        );
        assert_eq!(read(&path), "three\n", "new lines at the original path");
    }

    #[test]
    fn reopening_an_unmoved_file_appends_to_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, "before\n").expect("an existing log");
        let file = ReopenableFile::open(&path).expect("open");
        write_line(&file, "one");
        file.reopen().expect("reopen");
        write_line(&file, "two");
        assert_eq!(read(&path), "before\none\ntwo\n");
    }

    #[test]
    fn a_failed_reopen_keeps_writing_to_the_old_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("access.log");
        let moved = dir.path().join("access.log.1");
        let file = ReopenableFile::open(&path).expect("open");
        write_line(&file, "one");
        std::fs::rename(&path, &moved).expect("rotate");
        // A directory where the file was: it cannot be opened for writing
        // (whoever runs the test, root included).
        std::fs::create_dir(&path).expect("a directory in the way");
        assert!(file.reopen().is_err(), "reopening a directory fails");
        write_line(&file, "two");
        assert_eq!(read(&moved), "one\ntwo\n");
        assert_eq!(file.path(), path);
    }
}
