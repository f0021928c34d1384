//! Helpers shared by the integration tests: temp dirs, and running the real
//! tools (which must be installed: a missing tool fails the test loudly).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("updraft-boot-{tag}-{}-{n}", std::process::id()));
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
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which Debian package provides each tool.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "mkenvimage" => "u-boot-tools",
        "fw_printenv" | "fw_setenv" => "libubootenv-tool",
        "grub-editenv" => "grub-common",
        _ => "?",
    }
}

/// The absolute path of `tool`, or a test failure that says how to get it.
pub fn tool(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
    for dir in std::env::split_paths(&path).chain(extra) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "required tool `{tool}` is not installed; these tests check our codecs against the real \
         tools: run `apt-get install -y {}` (Debian 12)",
        package_of(tool)
    );
}

/// Runs `tool args...` and returns its output (whatever the exit code).
pub fn run<I, S>(tool_name: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(tool(tool_name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool_name}: {e}"))
}

/// Runs a tool and panics with its stderr unless it exits 0; returns stdout.
pub fn run_ok<I, S>(tool_name: &str, args: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let out = run(tool_name, &args);
    assert!(
        out.status.success(),
        "{tool_name} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
