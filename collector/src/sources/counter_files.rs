//! The cgroup counter files read at every CPU tick (`cpu.stat`, `cpuacct.usage`,
//! `memory.current`, ...), kept open and re-read from offset 0.
//!
//! Opening a cgroup file walks its path through kernfs on every call; at ten readings a
//! second per container that walk, the open and the close were a third of the collector's
//! own CPU. A cgroupfs (seq_file) file read at offset 0 is generated afresh, so one `pread`
//! per reading gives the current value. A file that is missing is not tried again until
//! [`CounterFiles::new_interval`] (the slow tick), and handles not read during an interval
//! are closed then, so a removed cgroup's files do not stay open.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

/// Most handles kept open; past that, files are opened for each reading.
const MAX_OPEN: usize = 512;

#[derive(Debug, Default)]
pub struct CounterFiles {
    open: HashMap<PathBuf, File>,
    /// Read since the last interval began (the others are closed then).
    used: HashSet<PathBuf>,
    /// Missing or unreadable this interval.
    missing: HashSet<PathBuf>,
    buf: Vec<u8>,
}

impl CounterFiles {
    /// The file's current content, or `None` if it is missing or unreadable (then not tried
    /// again this interval).
    pub fn read(&mut self, path: &Path) -> Option<&str> {
        if self.missing.contains(path) {
            return None;
        }
        if !self.open.contains_key(path) {
            match File::open(path) {
                Ok(file) if self.open.len() < MAX_OPEN => {
                    self.open.insert(path.to_owned(), file);
                }
                Ok(file) => return self.read_once(&file),
                Err(_) => {
                    self.missing.insert(path.to_owned());
                    return None;
                }
            }
        }
        self.used.insert(path.to_owned());
        let file = self.open.get(path)?;
        let len = match read_at_start(file, &mut self.buf) {
            Ok(len) => len,
            Err(_) => {
                // A removed cgroup's open file answers ENODEV.
                self.open.remove(path);
                self.missing.insert(path.to_owned());
                return None;
            }
        };
        std::str::from_utf8(&self.buf[..len]).ok()
    }

    fn read_once(&mut self, file: &File) -> Option<&str> {
        let len = read_at_start(file, &mut self.buf).ok()?;
        std::str::from_utf8(&self.buf[..len]).ok()
    }

    /// A new slow interval: missing files may be tried again, unused handles are closed.
    pub fn new_interval(&mut self) {
        self.missing.clear();
        let used = std::mem::take(&mut self.used);
        self.open.retain(|path, _| used.contains(path));
    }

    /// Handles open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

/// Reads the whole file from offset 0 into `buf` (grown as needed); returns its length.
pub(crate) fn read_at_start(file: &File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let room = buf.len() - len;
        let n = file.read_at(&mut buf[len..], len as u64)?;
        len += n;
        if n == 0 || n < room {
            return Ok(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_current_content_and_forgets_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.current");
        std::fs::write(&path, "100\n").unwrap();
        let mut files = CounterFiles::default();
        assert_eq!(files.read(&path), Some("100\n"));
        // Rewritten in place (same inode, like a counter): the held handle sees it.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(b"250\n", 0)
            .unwrap();
        assert_eq!(files.read(&path), Some("250\n"));
        assert_eq!(files.open_count(), 1);
        // A missing file is not tried again within the interval.
        let gone = dir.path().join("cpu.stat");
        assert_eq!(files.read(&gone), None);
        std::fs::write(&gone, "usage_usec 5\n").unwrap();
        assert_eq!(files.read(&gone), None);
        files.new_interval();
        assert_eq!(files.read(&gone), Some("usage_usec 5\n"));
        // Handles unread for a whole interval are closed.
        files.new_interval();
        files.read(&gone);
        files.new_interval();
        assert_eq!(files.open_count(), 1);
    }

    #[test]
    fn cgroup_files_are_fresh_at_every_read() {
        // This thread's schedstat changes as it runs: each pread at 0 regenerates it.
        let path = Path::new("/proc/thread-self/schedstat");
        let mut files = CounterFiles::default();
        let first = files.read(path).unwrap().to_owned();
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(started.elapsed());
        }
        let second = files.read(path).unwrap().to_owned();
        assert_ne!(
            first, second,
            "a held handle re-read at offset 0 is regenerated"
        );
    }
}
