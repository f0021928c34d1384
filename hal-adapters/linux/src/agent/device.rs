//! What the daemon needs from a Linux device: the slots it writes, the
//! file that holds the state record, the bootloader's variables, the
//! device key, and the identity and inventory scripts Mender devices
//! already have.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use updraft_boot::control::{GrubControl, SlotPartitions, UbootControl};
use updraft_boot::mender_grub::{FsDir, MenderGrubenv};
use updraft_core::boot::{BootControl, BootState, Slot, Verified};
use updraft_core::crypto::SigningKey;
use updraft_core::install::SlotWriter;
use updraft_core::storage::Storage;

use super::scripts::Scripts;
use crate::boot_env::{self, LockSpec};

/// Writes an image into slot A or B: a block device or a file.
///
/// A block device must be large enough for the image; a file is cut to the
/// image's size. Every byte is flushed and `fsync`ed before
/// [`finish`](SlotWriter::finish) returns.
pub struct SlotDevices {
    paths: [PathBuf; 2],
    open: Option<Open>,
    /// Where the artifact's state scripts go (none: they are ignored).
    pub scripts: Option<Scripts>,
}

struct Open {
    out: BufWriter<File>,
    path: PathBuf,
    size: u64,
    written: u64,
    regular: bool,
}

impl SlotDevices {
    /// Slots A and B at these paths.
    pub fn new(paths: [PathBuf; 2]) -> Self {
        SlotDevices {
            paths,
            open: None,
            scripts: None,
        }
    }

    /// The path of `slot`.
    pub fn path(&self, slot: Slot) -> &Path {
        match slot {
            Slot::A => &self.paths[0],
            Slot::B => &self.paths[1],
        }
    }
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl SlotWriter for SlotDevices {
    type Error = io::Error;

    fn begin(&mut self, slot: Slot, size: u64) -> io::Result<()> {
        let path = self.path(slot).to_path_buf();
        // Never create a slot: a typo in RootfsPartB must not turn into
        // an image written to a new file nobody boots.
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| at(&path, e))?;
        let regular = file.metadata().map_err(|e| at(&path, e))?.is_file();
        if !regular {
            let capacity = file.seek(SeekFrom::End(0)).map_err(|e| at(&path, e))?;
            if size > capacity {
                return Err(io::Error::other(format!(
                    "the image ({size} bytes) does not fit slot {slot} ({}, {capacity} bytes)",
                    path.display()
                )));
            }
            file.seek(SeekFrom::Start(0)).map_err(|e| at(&path, e))?;
        }
        self.open = Some(Open {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
            size,
            written: 0,
            regular,
        });
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let o = self
            .open
            .as_mut()
            .ok_or_else(|| io::Error::other("slot write before begin"))?;
        o.written += data.len() as u64;
        if o.written > o.size {
            return Err(io::Error::other(format!(
                "more payload than the {} bytes announced",
                o.size
            )));
        }
        o.out.write_all(data).map_err(|e| at(&o.path, e))
    }

    fn finish(&mut self) -> io::Result<()> {
        let o = self
            .open
            .take()
            .ok_or_else(|| io::Error::other("slot finish before begin"))?;
        if o.written != o.size {
            return Err(io::Error::other(format!(
                "{} of {} payload bytes written",
                o.written, o.size
            )));
        }
        let path = o.path;
        let file = o.out.into_inner().map_err(|e| at(&path, e.into_error()))?;
        if o.regular {
            file.set_len(o.size).map_err(|e| at(&path, e))?;
        }
        file.sync_all().map_err(|e| at(&path, e))
    }

    fn script_begin(&mut self, name: &str, _size: u64) -> io::Result<()> {
        match self.scripts.as_mut() {
            Some(s) => s.stage_begin(name),
            None => Ok(()),
        }
    }

    fn script_data(&mut self, data: &[u8]) -> io::Result<()> {
        match self.scripts.as_mut() {
            Some(s) => s.stage_data(data),
            None => Ok(()),
        }
    }

    fn script_end(&mut self) -> io::Result<()> {
        match self.scripts.as_mut() {
            Some(s) => s.stage_end(),
            None => Ok(()),
        }
    }
}

/// The state record's file, for [`DualStore`](updraft_core::store::DualStore):
/// both copies live in it, each rewritten in place and `fdatasync`ed.
pub struct StateFile {
    file: File,
    path: PathBuf,
}

impl StateFile {
    /// Opens (or creates, mode 0600) `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| at(path, e))?;
        Ok(StateFile {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl Storage for StateFile {
    type Error = io::Error;

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        // A new or short file reads as zeros past its end: no copy there.
        buf.fill(0);
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(at(&self.path, e)),
            }
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| at(&self.path, e))
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data().map_err(|e| at(&self.path, e))
    }
}

/// The bootloader's trial-boot variables: a U-Boot env or Mender's double
/// GRUB env. Each call opens the env afresh (under libubootenv's lock for
/// U-Boot), so `fw_setenv` and the daemon never overwrite each other.
#[derive(Debug, Clone)]
pub enum BootEnv {
    /// U-Boot, through this `fw_env.config`.
    Uboot {
        /// The `fw_env.config`.
        config: PathBuf,
        /// The lock file.
        lock: LockSpec,
        /// The slots' partitions.
        parts: SlotPartitions,
    },
    /// GRUB, in this directory.
    Grub {
        /// The directory holding `mender_grubenv1/2`.
        dir: PathBuf,
        /// The slots' partitions.
        parts: SlotPartitions,
    },
}

/// One [`BootControl`] operation with the error turned into text.
trait Control {
    fn state(&mut self) -> Result<BootState, String>;
    fn arm(&mut self, slot: Slot, proof: &Verified) -> Result<(), String>;
    fn confirm(&mut self) -> Result<(), String>;
    fn roll_back(&mut self) -> Result<(), String>;
}

impl<B: BootControl> Control for B {
    fn state(&mut self) -> Result<BootState, String> {
        BootControl::state(self).map_err(|e| e.to_string())
    }
    fn arm(&mut self, slot: Slot, proof: &Verified) -> Result<(), String> {
        self.arm_trial(slot, proof).map_err(|e| e.to_string())
    }
    fn confirm(&mut self) -> Result<(), String> {
        BootControl::confirm(self).map_err(|e| e.to_string())
    }
    fn roll_back(&mut self) -> Result<(), String> {
        BootControl::roll_back(self).map_err(|e| e.to_string())
    }
}

impl BootEnv {
    fn with<T>(
        &self,
        writable: bool,
        f: impl FnOnce(&mut dyn Control) -> Result<T, String>,
    ) -> Result<T, String> {
        match self {
            BootEnv::Uboot {
                config,
                lock,
                parts,
            } => {
                let _lock = boot_env::take_lock(lock).map_err(|e| e.to_string())?;
                let env = boot_env::open_uboot(config, writable).map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; env.size()];
                let mut control = UbootControl::new(env, &mut buf, *parts);
                f(&mut control).map_err(|e| format!("{}: {e}", config.display()))
            }
            BootEnv::Grub { dir, parts } => {
                let fs = FsDir::new(dir.clone());
                let mut work = boot_env::grub_work(&fs);
                let mut control = GrubControl::new(MenderGrubenv::new(fs), &mut work, *parts);
                f(&mut control).map_err(|e| format!("Mender grubenv in {}: {e}", dir.display()))
            }
        }
    }

    /// What the bootloader says now.
    pub fn state(&self) -> Result<BootState, String> {
        self.with(false, |c| c.state())
    }

    /// Arms a trial boot of `slot`.
    pub fn arm(&self, slot: Slot, proof: &Verified) -> Result<(), String> {
        self.with(true, |c| c.arm(slot, proof))
    }

    /// Makes the running trial permanent.
    pub fn confirm(&self) -> Result<(), String> {
        self.with(true, |c| c.confirm())
    }

    /// Abandons the trial.
    pub fn roll_back(&self) -> Result<(), String> {
        self.with(true, |c| c.roll_back())
    }
}

/// Loads the device key, or makes an ECDSA P-256 key (SEC1 PEM, mode
/// 0600) when the file does not exist. RSA keys (Mender's
/// `mender-agent.pem`) are used as they are.
pub fn device_key(path: &Path) -> Result<(SigningKey, bool), String> {
    match std::fs::read_to_string(path) {
        Ok(pem) => SigningKey::from_pem(&pem)
            .map(|k| (k, false))
            .map_err(|e| format!("device key {}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let secret = p256::SecretKey::random(&mut rand_core::OsRng);
            let pem = secret
                .to_sec1_pem(p256::pkcs8::LineEnding::LF)
                .map_err(|e| format!("encoding a new device key: {e}"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let tmp = path.with_extension("pem.new");
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            f.write_all(pem.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((SigningKey::EcdsaP256(secret.into()), true))
        }
        Err(e) => Err(format!("device key {}: {e}", path.display())),
    }
}

/// `key=value` lines (as identity and inventory scripts print them, and
/// as `device_type` and `artifact_info` hold them). Lines without `=` are
/// skipped.
pub fn key_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// The value of `key` in a `key=value` file.
pub fn file_value(path: &Path, key: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    key_values(&text)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{}: no {key}=... line", path.display()))
}

fn run_script(path: &Path) -> Result<String, String> {
    let out = Command::new(path)
        .output()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The device identity as Mender's `id_data` JSON: the identity script's
/// `key=value` lines (a key seen several times becomes a list). Without the
/// script, the MAC address of the first network interface that has one.
pub fn identity(script: &Path) -> Result<String, String> {
    let pairs = if script.exists() {
        key_values(&run_script(script)?)
    } else {
        vec![("mac".to_owned(), first_mac()?)]
    };
    if pairs.is_empty() {
        return Err(format!("{} printed no key=value line", script.display()));
    }
    let mut map = serde_json::Map::new();
    for (k, v) in pairs {
        match map.get_mut(&k) {
            None => {
                map.insert(k, serde_json::Value::String(v));
            }
            Some(serde_json::Value::Array(list)) => list.push(v.into()),
            Some(old) => {
                let first = old.take();
                *old = serde_json::Value::Array(vec![first, v.into()]);
            }
        }
    }
    Ok(serde_json::Value::Object(map).to_string())
}

fn first_mac() -> Result<String, String> {
    let mut names: Vec<_> = std::fs::read_dir("/sys/class/net")
        .map_err(|e| format!("/sys/class/net: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    for n in names {
        let p = Path::new("/sys/class/net").join(&n).join("address");
        if let Ok(mac) = std::fs::read_to_string(&p) {
            let mac = mac.trim();
            if !mac.is_empty() && mac != "00:00:00:00:00:00" {
                return Ok(mac.to_owned());
            }
        }
    }
    Err("no identity script and no network interface with a MAC address".into())
}

/// The inventory scripts' `key=value` lines (`mender-inventory-*`, in
/// name order). A failing script is reported and skipped, as Mender does.
pub fn inventory(dir: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let mut scripts: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("mender-inventory-"))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    scripts.sort();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut errors = Vec::new();
    for s in scripts {
        match run_script(&s) {
            Ok(out) => {
                for (k, v) in key_values(&out) {
                    // The device API takes one value per attribute here.
                    if !pairs.iter().any(|(old, _)| *old == k) {
                        pairs.push((k, v));
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (pairs, errors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slot_writer_cuts_files_and_refuses_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"old image, longer than the new one").unwrap();
        std::fs::write(&b, b"").unwrap();
        let mut w = SlotDevices::new([a.clone(), b.clone()]);
        w.begin(Slot::A, 5).unwrap();
        w.write(b"new").unwrap();
        w.write(b"!!").unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"new!!");
        w.begin(Slot::B, 2).unwrap();
        assert!(w
            .write(b"abc")
            .unwrap_err()
            .to_string()
            .contains("announced"));
        let mut missing = SlotDevices::new([dir.path().join("x"), b]);
        let e = missing.begin(Slot::A, 1).unwrap_err().to_string();
        assert!(e.contains("/x"), "{e}");
    }

    #[test]
    fn state_file_reads_zeros_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::open(&dir.path().join("state")).unwrap();
        let mut buf = [9u8; 8];
        f.read(0, &mut buf).unwrap();
        assert_eq!(buf, [0; 8]);
        f.write(2, b"ab").unwrap();
        f.sync().unwrap();
        f.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"\0\0ab\0\0\0\0");
    }

    #[test]
    fn identity_lists_repeated_keys() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("id");
        std::fs::write(
            &script,
            "#!/bin/sh\necho mac=52:54:00:aa:bb:cc\necho ip=1\necho ip=2\necho junk\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let id: serde_json::Value = serde_json::from_str(&identity(&script).unwrap()).unwrap();
        assert_eq!(
            id,
            serde_json::json!({"mac": "52:54:00:aa:bb:cc", "ip": ["1", "2"]})
        );
    }

    #[test]
    fn device_key_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/device.pem");
        let (k1, made) = device_key(&path).unwrap();
        assert!(made);
        let (k2, made) = device_key(&path).unwrap();
        assert!(!made);
        assert_eq!(k1.verifying_key(), k2.verifying_key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
