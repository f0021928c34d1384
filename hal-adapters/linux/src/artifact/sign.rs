//! Signing (or re-signing) an existing artifact: `updraft artifact sign`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use updraft_core::crypto::{RingSha256, Sha256, Signer};

use super::write::WriteError;

fn io_err(what: &str) -> impl Fn(io::Error) -> WriteError + '_ {
    move |error| WriteError::Io {
        what: what.to_owned(),
        error,
    }
}

/// Copy the artifact `src` to `dst` with a new `manifest.sig` made by
/// `signer` (an old one is replaced). The artifact is checked first with
/// the reader (every digest must match): a damaged artifact is never
/// signed.
pub fn sign_artifact(src: &Path, dst: &mut File, signer: &dyn Signer) -> Result<(), WriteError> {
    let what = format!("reading {}", src.display());
    let f = File::open(src).map_err(io_err(&what))?;
    super::summarize(f, &[], |_| {}).map_err(|e| {
        WriteError::Invalid(format!("{} is not a valid artifact: {e}", src.display()))
    })?;
    let f = File::open(src).map_err(io_err(&what))?;
    let mut archive = tar::Archive::new(io::BufReader::with_capacity(1 << 20, f));
    let mut out = io::BufWriter::with_capacity(1 << 20, dst);
    let werr = "writing the signed artifact";
    let entries = archive.entries().map_err(io_err(&what))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err(&what))?;
        let name = entry
            .path()
            .map_err(io_err(&what))?
            .to_string_lossy()
            .into_owned();
        if name == "manifest.sig" {
            continue;
        }
        let header = entry.header().clone();
        if name == "manifest" {
            let mut manifest = Vec::new();
            entry.read_to_end(&mut manifest).map_err(io_err(&what))?;
            out.write_all(header.as_bytes()).map_err(io_err(werr))?;
            write_padded(&mut out, &manifest).map_err(io_err(werr))?;
            let mut sig = vec![0u8; signer.signature_len()];
            let n = signer
                .sign_digest(&RingSha256::digest(&manifest), &mut sig)
                .map_err(WriteError::Sign)?;
            use base64ct::Encoding;
            let b64 = base64ct::Base64::encode_string(&sig[..n]);
            let mut h = tar::Header::new_ustar();
            let _ = h.set_path("manifest.sig");
            h.set_size(b64.len() as u64);
            h.set_mode(0o600);
            h.set_mtime(0);
            h.set_cksum();
            out.write_all(h.as_bytes()).map_err(io_err(werr))?;
            write_padded(&mut out, b64.as_bytes()).map_err(io_err(werr))?;
            continue;
        }
        out.write_all(header.as_bytes()).map_err(io_err(werr))?;
        let n = io::copy(&mut entry, &mut out).map_err(io_err(werr))?;
        let pad = (512 - n % 512) % 512;
        out.write_all(&vec![0u8; pad as usize])
            .map_err(io_err(werr))?;
    }
    out.write_all(&[0u8; 1024]).map_err(io_err(werr))?;
    out.flush().map_err(io_err(werr))?;
    Ok(())
}

fn write_padded(w: &mut impl Write, data: &[u8]) -> io::Result<()> {
    w.write_all(data)?;
    let pad = (512 - data.len() % 512) % 512;
    w.write_all(&vec![0u8; pad])
}

/// Sign `src` into `dst` (may be the same path) atomically.
pub fn sign_to_path(src: &Path, dst: &Path, signer: &dyn Signer) -> Result<(), WriteError> {
    let dir = match dst.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|error| WriteError::Io {
        what: format!("creating a file in {}", dir.display()),
        error,
    })?;
    sign_artifact(src, tmp.as_file_mut(), signer)?;
    tmp.as_file().sync_all().map_err(|error| WriteError::Io {
        what: format!("writing {}", dst.display()),
        error,
    })?;
    tmp.persist(dst).map_err(|e| WriteError::Io {
        what: format!("writing {}", dst.display()),
        error: e.error,
    })?;
    Ok(())
}
