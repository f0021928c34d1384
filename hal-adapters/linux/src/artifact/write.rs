//! Writing Mender artifacts (format v3) as `mender-artifact write` does:
//! the format writer is `updraft-core`'s [`updraft_core::artifact::write`]
//! (one pass over the payload, parallel gzip); this adds the atomic write
//! to a path.

use std::path::Path;

pub use updraft_core::artifact::write::{
    check_script_name, write_artifact, Compression, Payload, Report, Spec, WriteError,
};
use updraft_core::crypto::Signer;

/// Write to `path` atomically: a temporary file beside it, renamed into
/// place when complete (a failed write leaves no partial file).
pub fn write_to_path(
    spec: &Spec,
    signer: Option<&dyn Signer>,
    path: &Path,
    progress: impl FnMut(u64),
) -> Result<Report, WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|error| WriteError::Io {
        what: format!("creating a file in {}", dir.display()),
        error,
    })?;
    let report = write_artifact(spec, signer, tmp.as_file_mut(), progress)?;
    // Atomic for readers (rename); not fsynced: this is a build-host tool,
    // and forcing 100s of MiB to disk would dominate its run time.
    tmp.persist(path).map_err(|e| WriteError::Io {
        what: format!("writing {}", path.display()),
        error: e.error,
    })?;
    Ok(report)
}
