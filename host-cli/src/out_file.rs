//! Output files the user names (`save -o`, `export -o`): written under a
//! temporary name beside the target, flushed and synced, then renamed over
//! it. A failed or interrupted write leaves no truncated file under the
//! name, and an existing file there stays as it was until the new one is
//! complete.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Runs `write` on a buffered temporary file beside `out`, then makes it
/// `out`; on any error the temporary file is removed.
pub fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let tmp = out.with_extension(format!("berth-tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        w.flush()
            .with_context(|| format!("writing {}", tmp.display()))?;
        w.get_ref()
            .sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("a.tar");
        std::fs::write(&out, b"old").unwrap();
        let r = write_atomically(&out, |w| {
            w.write_all(b"partial")?;
            anyhow::bail!("the source went away")
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        write_atomically(&out, |w| Ok(w.write_all(b"new")?)).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
