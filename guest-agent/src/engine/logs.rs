//! Container logs in docker's `json-file` format: one JSON object per line
//! of output (`{"log":"...\n","stream":"stdout","time":"..."}`), rotated by
//! size into `container.log.1`, `.2`, … and read back for `logs`.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Default rotation: 10 MiB per file, 3 files (like a common docker
/// `--log-opt max-size=10m --log-opt max-file=3`).
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_FILES: u32 = 3;

/// A partial line longer than this is written out without waiting for its
/// newline (docker splits at 16 KiB too).
const MAX_PARTIAL: usize = 16 * 1024;

/// One stored log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Writes a container's output as log entries, one per line.
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: u32,
    partial: [Vec<u8>; 2],
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl LogWriter {
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> LogWriter {
        let file = OpenOptions::new().create(true).append(true).open(path).ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
            .unwrap_or(0);
        LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size: max_size.max(4096),
            max_files: max_files.max(1),
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// Records output of `stream` (0 = stdout, 1 = stderr).
    pub fn write(&mut self, stream: usize, data: &[u8]) {
        let stream = stream.min(1);
        self.partial[stream].extend_from_slice(data);
        loop {
            let buf = &self.partial[stream];
            let cut = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if buf.len() >= MAX_PARTIAL => MAX_PARTIAL,
                None => break,
            };
            let line: Vec<u8> = self.partial[stream].drain(..cut).collect();
            self.emit(stream, &line);
        }
    }

    /// Writes out unterminated output (at exit).
    pub fn flush(&mut self) {
        for s in 0..2 {
            if !self.partial[s].is_empty() {
                let line = std::mem::take(&mut self.partial[s]);
                self.emit(s, &line);
            }
        }
    }

    fn emit(&mut self, stream: usize, line: &[u8]) {
        let entry = LogEntry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: if stream == 1 { "stderr" } else { "stdout" }.into(),
            time: now(),
        };
        let Ok(mut j) = serde_json::to_vec(&entry) else {
            return;
        };
        j.push(b'\n');
        if self.size > 0 && self.size + j.len() as u64 > self.max_size {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(&j).is_ok() {
                self.size += j.len() as u64;
            }
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        if self.max_files <= 1 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            for n in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
            }
            let _ = std::fs::rename(&self.path, rotated(&self.path, 1));
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }
}

/// Every stored entry, oldest first (rotated files included), and a
/// follower positioned right after the last entry read.
pub fn read_all(path: &Path) -> (Vec<LogEntry>, Follower) {
    let mut files: Vec<PathBuf> = (1..64)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    let mut out = Vec::new();
    for f in files {
        if let Ok(file) = File::open(&f) {
            read_entries(&mut BufReader::new(file), &mut out);
        }
    }
    let mut follower = Follower {
        path: path.to_path_buf(),
        file: None,
        pos: 0,
        ino: 0,
    };
    follower.read_more(&mut out);
    (out, follower)
}

/// Parses complete lines; a torn last line (no newline yet) is left unread
/// and its bytes are not consumed from the caller's point of view.
fn read_entries<R: BufRead>(r: &mut R, out: &mut Vec<LogEntry>) -> u64 {
    let mut consumed = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return consumed,
            Ok(n) => {
                if line.last() != Some(&b'\n') {
                    return consumed;
                }
                consumed += n as u64;
                if let Ok(e) = serde_json::from_slice::<LogEntry>(&line) {
                    out.push(e);
                }
            }
        }
    }
}

/// Follows the live log file: yields new entries as they are written,
/// surviving rotation (the file at `path` being replaced).
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    pos: u64,
    ino: u64,
}

fn inode(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.ino())
}

impl Follower {
    /// Entries written since the last call.
    pub fn poll(&mut self) -> Vec<LogEntry> {
        let mut out = Vec::new();
        self.read_more(&mut out);
        if let Some(ino) = inode(&self.path) {
            if ino != self.ino {
                // Rotated: finish the old file, then continue with the new.
                self.read_more(&mut out);
                self.file = File::open(&self.path).ok();
                self.pos = 0;
                self.ino = ino;
                self.read_more(&mut out);
            }
        }
        out
    }

    fn read_more(&mut self, out: &mut Vec<LogEntry>) {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
            self.pos = 0;
            self.ino = inode(&self.path).unwrap_or(0);
        }
        let Some(f) = self.file.as_mut() else {
            return;
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return;
        }
        let mut r = BufReader::new(f);
        self.pos += read_entries(&mut r, out);
    }
}

/// Parses an entry's time as unix nanoseconds.
pub fn entry_nanos(e: &LogEntry) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(&e.time)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_rotation_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("container.log");
        let mut w = LogWriter::open(&p, 4096, 3);
        w.write(0, b"one\ntw");
        w.write(0, b"o\nthree");
        w.write(1, b"err\n");
        w.flush();
        let (all, _) = read_all(&p);
        let logs: Vec<&str> = all.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(logs, ["one\n", "two\n", "err\n", "three"]);
        assert_eq!(all[2].stream, "stderr");
        // Enough to rotate several times: only max_files files remain and
        // the newest entries are kept in order.
        for i in 0..400 {
            w.write(0, format!("line {i:04}\n").as_bytes());
        }
        assert!(rotated(&p, 2).exists());
        assert!(!rotated(&p, 3).exists());
        let (all, _) = read_all(&p);
        assert_eq!(all.last().unwrap().log, "line 0399\n");
        let nums: Vec<u32> = all
            .iter()
            .filter_map(|e| e.log.strip_prefix("line ")?.trim().parse().ok())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    }

    #[test]
    fn follower_sees_new_lines_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("container.log");
        let mut w = LogWriter::open(&p, 4096, 2);
        w.write(0, b"before\n");
        let (before, mut f) = read_all(&p);
        assert_eq!(before.len(), 1);
        assert!(f.poll().is_empty());
        let mut seen = Vec::new();
        for i in 0..200 {
            w.write(0, format!("n{i}\n").as_bytes());
            if i % 10 == 0 {
                seen.extend(f.poll());
            }
        }
        seen.extend(f.poll());
        let logs: Vec<String> = seen.iter().map(|e| e.log.clone()).collect();
        let expect: Vec<String> = (0..200).map(|i| format!("n{i}\n")).collect();
        assert_eq!(logs, expect);
    }
}
