//! Helpers for the MCUboot tests: finding (or installing) imgtool 2.5.0,
//! temp dirs, keys, and an arming proof from a real Mender artifact.
//!
//! imgtool is looked up in `$IMGTOOL`, then
//! `/var/tmp/updraft-imgtool-venv/bin/imgtool`; if neither exists it is
//! installed there (`python3 -m venv` + `pip install imgtool==2.5.0`). If
//! that fails the test fails with the reason: these tests never pass
//! without the real tool.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use updraft_boot::mcuboot::PublicKey;

pub const IMGTOOL_VERSION: &str = "2.5.0";
const VENV: &str = "/var/tmp/updraft-imgtool-venv";

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("updraft-mcuboot-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn s(&self, name: &str) -> String {
        self.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn version_ok(exe: &Path) -> Result<(), String> {
    let out = Command::new(exe)
        .arg("version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let v = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && v.trim() == IMGTOOL_VERSION {
        Ok(())
    } else {
        Err(format!(
            "{} is imgtool {:?}, these tests need {IMGTOOL_VERSION}",
            exe.display(),
            v.trim()
        ))
    }
}

fn install() -> Result<PathBuf, String> {
    let exe = Path::new(VENV).join("bin/imgtool");
    if version_ok(&exe).is_ok() {
        return Ok(exe);
    }
    // Install into a private dir, then move it in place, so concurrent
    // test binaries never see a half-made venv.
    let tmp = format!("{VENV}.tmp-{}", std::process::id());
    let _ = std::fs::remove_dir_all(&tmp);
    let step = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    step(Command::new("python3").args(["-m", "venv", &tmp]))?;
    step(Command::new(format!("{tmp}/bin/pip")).args([
        "install",
        "-q",
        &format!("imgtool=={IMGTOOL_VERSION}"),
    ]))?;
    // venv scripts hard-code their path: build the final venv in place
    // if nobody else did meanwhile.
    let _ = std::fs::remove_dir_all(&tmp);
    if version_ok(&exe).is_err() {
        let _ = std::fs::remove_dir_all(VENV);
        step(Command::new("python3").args(["-m", "venv", VENV]))?;
        step(Command::new(format!("{VENV}/bin/pip")).args([
            "install",
            "-q",
            &format!("imgtool=={IMGTOOL_VERSION}"),
        ]))?;
    }
    version_ok(&exe)?;
    Ok(exe)
}

/// The imgtool executable, or a test failure saying why there is none.
pub fn imgtool() -> &'static Path {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = EXE.get_or_init(|| match std::env::var_os("IMGTOOL") {
        Some(p) => {
            let p = PathBuf::from(p);
            version_ok(&p).map(|()| p)
        }
        None => install(),
    });
    match found {
        Ok(p) => p,
        Err(e) => panic!(
            "imgtool {IMGTOOL_VERSION} is required and could not be found or installed: {e}\n\
             Set IMGTOOL to an imgtool {IMGTOOL_VERSION} executable, or run \
             `python3 -m venv {VENV} && {VENV}/bin/pip install imgtool=={IMGTOOL_VERSION}`"
        ),
    }
}

/// Runs imgtool with `args` (whatever its exit code).
pub fn imgtool_run(args: &[&str]) -> Output {
    Command::new(imgtool())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run imgtool: {e}"))
}

/// Runs imgtool and fails the test unless it exits 0; returns stdout.
pub fn imgtool_ok(args: &[&str]) -> String {
    let out = imgtool_run(args);
    assert!(
        out.status.success(),
        "imgtool {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `imgtool verify [-k key] file`: (success, stdout).
pub fn imgtool_verify(key: Option<&Path>, file: &Path) -> (bool, String) {
    let mut args = vec!["verify".to_owned()];
    if let Some(k) = key {
        args.push("-k".into());
        args.push(k.to_str().unwrap().into());
    }
    args.push(file.to_str().unwrap().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = imgtool_run(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `imgtool dumpinfo -f json file`, parsed.
pub fn dumpinfo(file: &Path) -> serde_json::Value {
    let out = imgtool_ok(&["dumpinfo", "-f", "json", file.to_str().unwrap()]);
    // dumpinfo may print warnings before the JSON document.
    let start = out.find('{').expect("no JSON in dumpinfo output");
    serde_json::from_str(&out[start..]).unwrap()
}

/// Key types imgtool can make, with their file names.
pub const KEY_TYPES: [&str; 4] = ["ecdsa-p256", "ed25519", "rsa-2048", "rsa-3072"];

/// A private key made by `imgtool keygen` and its public key as we load it.
pub struct Key {
    pub pem: PathBuf,
    pub public: PublicKey,
}

/// Keys made once per test process (two of each type).
pub fn key(kind: &str, n: usize) -> &'static Key {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    static KEYS: OnceLock<std::sync::Mutex<Vec<(String, &'static Key)>>> = OnceLock::new();
    let dir = DIR.get_or_init(|| TempDir::new("keys"));
    let name = format!("{kind}-{n}");
    let mut keys = KEYS.get_or_init(Default::default).lock().unwrap();
    if let Some((_, k)) = keys.iter().find(|(k, _)| *k == name) {
        return k;
    }
    let pem = dir.join(&format!("{name}.pem"));
    let raw = dir.join(&format!("{name}.der"));
    imgtool_ok(&["keygen", "-t", kind, "-k", pem.to_str().unwrap()]);
    imgtool_ok(&[
        "getpub",
        "-k",
        pem.to_str().unwrap(),
        "-e",
        "raw",
        "-o",
        raw.to_str().unwrap(),
    ]);
    let der = std::fs::read(&raw).unwrap();
    let public = PublicKey::from_der(&der)
        .unwrap_or_else(|e| panic!("our loader rejects imgtool's {kind} key: {e}"));
    let k: &'static Key = Box::leak(Box::new(Key { pem, public }));
    keys.push((name, k));
    k
}

pub fn pseudo_random(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Signs a 1000-byte payload: `imgtool sign --header-size 0x200
/// --pad-header --version 1.2.3+4 [key] <extra> app.bin out`; returns
/// the output path.
pub fn sign(dir: &TempDir, out: &str, key: Option<&Key>, extra: &[&str]) -> PathBuf {
    let app = dir.join("app.bin");
    if !app.exists() {
        std::fs::write(&app, pseudo_random(1000, 7)).unwrap();
    }
    let out_path = dir.join(out);
    let mut args: Vec<String> = vec!["sign".into()];
    if let Some(k) = key {
        args.extend(["-k".into(), k.pem.to_str().unwrap().into()]);
    }
    args.extend(
        [
            "--header-size",
            "0x200",
            "--pad-header",
            "--version",
            "1.2.3+4",
            "--slot-size",
            "0x20000",
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(app.to_str().unwrap().into());
    args.push(out_path.to_str().unwrap().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    imgtool_ok(&args);
    out_path
}

/// The arming proof, from a tiny artifact made by Debian's
/// `mender-artifact` and read by our reader.
pub fn proof() -> updraft_core::boot::Verified {
    static ARTIFACT: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = ARTIFACT.get_or_init(|| {
        let dir = TempDir::new("artifact");
        std::fs::write(dir.join("payload"), b"mcuboot image stand-in").unwrap();
        let out = Command::new("mender-artifact")
            .current_dir(dir.path())
            .args([
                "write",
                "module-image",
                "-T",
                "mcuboot",
                "-n",
                "release-1",
                "-t",
                "board",
                "-f",
                "payload",
                "-o",
                "a.mender",
            ])
            .output()
            .expect("mender-artifact must be installed (apt-get install mender-artifact)");
        assert!(
            out.status.success(),
            "mender-artifact failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(dir.join("a.mender")).unwrap()
    });
    let mut reader = updraft_core::artifact::Reader::new();
    let mut input = &bytes[..];
    loop {
        let (n, ev) = reader.feed(input).unwrap();
        input = &input[n..];
        if ev.is_none() {
            break;
        }
    }
    reader.finish().unwrap();
    reader
        .verified()
        .expect("a complete artifact gives a proof")
}
