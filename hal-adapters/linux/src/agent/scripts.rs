//! State scripts on Linux, where Mender keeps them: the root file system's
//! in `/etc/mender/scripts` (`RootfsScriptsDir`), the artifact's in
//! `<DataDir>/scripts` (with a `version` file holding `3`).
//!
//! An artifact's scripts are written to `<DataDir>/scripts.new` while it
//! streams in and replace `<DataDir>/scripts` only once the whole artifact
//! verified: a tampered artifact never gets a script run. An artifact
//! without scripts leaves the directory empty, so the previous artifact's
//! scripts never run for a new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use updraft_core::script::{parse_name, Hook};

/// Standard error kept per script run, as Mender does (10 KiB).
const STDERR_MAX: usize = 10 * 1024;

/// How a script run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Ok,
    /// Exit code 21: run it again later.
    RetryLater,
    /// Anything else, with what went wrong (exit status and stderr).
    Failed(String),
}

/// The scripts the daemon runs and the artifact scripts it stages.
pub struct Scripts {
    rootfs: PathBuf,
    artifact: PathBuf,
    staging: PathBuf,
    timeout: Duration,
    current: Option<(File, PathBuf)>,
}

impl Scripts {
    /// Root file system scripts in `rootfs`, artifact scripts under
    /// `data_dir`, each run for at most `timeout`.
    pub fn new(rootfs: &Path, data_dir: &Path, timeout: Duration) -> Scripts {
        Scripts {
            rootfs: rootfs.to_path_buf(),
            artifact: data_dir.join("scripts"),
            staging: data_dir.join("scripts.new"),
            timeout,
            current: None,
        }
    }

    fn dir(&self, hook: Hook) -> &Path {
        if hook.state.from_artifact() {
            &self.artifact
        } else {
            &self.rootfs
        }
    }

    /// The `index`-th script of `hook`, in name order. A missing directory
    /// has no scripts.
    pub fn find(&self, hook: Hook, index: u8) -> io::Result<Option<String>> {
        let dir = self.dir(hook);
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(at(dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| at(dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if hook.matches(&name) && entry.path().is_file() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names.into_iter().nth(usize::from(index)))
    }

    /// Runs script `name` of `hook` (no arguments, as Mender), killing it
    /// after the timeout.
    pub fn run(&self, hook: Hook, name: &str) -> Outcome {
        let path = self.dir(hook).join(name);
        // Its own process group, so a timeout stops what it started too.
        let mut child = match Command::new(&path)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(format!("{}: {e}", path.display())),
        };
        // Read stderr on the side so a chatty script cannot fill the pipe
        // and stall.
        let stderr = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = STDERR_MAX.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                kept
            })
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() >= self.timeout => {
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{}", child.id())])
                        .stderr(Stdio::null())
                        .status();
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "timed out after {} s (StateScriptTimeoutSeconds)",
                        self.timeout.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => break Err(e.to_string()),
            }
        };
        // After a timeout, a grandchild that escaped the group may still
        // hold stderr open: do not wait for it then.
        let err = stderr
            .filter(|t| status.is_ok() || t.is_finished())
            .and_then(|t| t.join().ok())
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .unwrap_or_default();
        let with_err = |what: String| {
            if err.is_empty() {
                what
            } else {
                format!("{what}: {err}")
            }
        };
        match status {
            Ok(s) if s.success() => Outcome::Ok,
            Ok(s) if s.code() == Some(21) => Outcome::RetryLater,
            Ok(s) => Outcome::Failed(with_err(s.to_string())),
            Err(e) => Outcome::Failed(with_err(e)),
        }
    }

    /// Empties the staging directory: a new artifact starts.
    pub fn stage_reset(&mut self) -> io::Result<()> {
        self.current = None;
        match fs::remove_dir_all(&self.staging) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(at(&self.staging, e)),
        }
        fs::create_dir_all(&self.staging).map_err(|e| at(&self.staging, e))
    }

    /// An artifact script starts: checked and created in staging.
    pub fn stage_begin(&mut self, name: &str) -> io::Result<()> {
        let valid = parse_name(name).filter(|(hook, _)| hook.state.from_artifact());
        if valid.is_none() || name.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the artifact carries a state script named {name:?}: artifact scripts are \
                     named Artifact<State>_<Enter|Leave|Error>_<NN>[_text]"
                ),
            ));
        }
        let path = self.staging.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&path)
            .map_err(|e| at(&path, e))?;
        self.current = Some((file, path));
        Ok(())
    }

    /// Bytes of the current artifact script.
    pub fn stage_data(&mut self, data: &[u8]) -> io::Result<()> {
        match self.current.as_mut() {
            Some((file, path)) => file.write_all(data).map_err(|e| at(path, e)),
            None => Err(io::Error::other("state script data before its start")),
        }
    }

    /// The current artifact script is complete.
    pub fn stage_end(&mut self) -> io::Result<()> {
        match self.current.take() {
            Some((file, path)) => file.sync_all().map_err(|e| at(&path, e)),
            None => Ok(()),
        }
    }

    /// The artifact verified: its scripts (possibly none) replace the
    /// previous artifact's.
    pub fn activate(&mut self) -> io::Result<()> {
        self.current = None;
        if !self.staging.exists() {
            fs::create_dir_all(&self.staging).map_err(|e| at(&self.staging, e))?;
        }
        fs::write(self.staging.join("version"), "3\n").map_err(|e| at(&self.staging, e))?;
        let old = self.artifact.with_extension("old");
        let _ = fs::remove_dir_all(&old);
        match fs::rename(&self.artifact, &old) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(at(&self.artifact, e)),
        }
        fs::rename(&self.staging, &self.artifact).map_err(|e| at(&self.artifact, e))?;
        let _ = fs::remove_dir_all(&old);
        Ok(())
    }
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use updraft_core::script::{ScriptState, When};

    fn script(dir: &Path, name: &str, body: &str) {
        fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("updraft-scripts-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn finds_in_name_order_and_reports_exit_codes_and_stderr() {
        let d = tmp("run");
        let rootfs = d.join("etc");
        let s = Scripts::new(&rootfs, &d.join("data"), Duration::from_secs(5));
        let hook = Hook {
            state: ScriptState::Sync,
            when: When::Enter,
        };
        assert_eq!(s.find(hook, 0).unwrap(), None, "no directory, no scripts");
        script(&rootfs, "Sync_Enter_10_b", "exit 21");
        script(&rootfs, "Sync_Enter_05_a", "exit 0");
        script(&rootfs, "Sync_Enter_20_c", "echo 'no network' >&2; exit 3");
        script(&rootfs, "Sync_Leave_00", "exit 0");
        script(&rootfs, "Sync_Enter_xx", "exit 0");
        let names: Vec<_> = (0..4).map(|i| s.find(hook, i).unwrap()).collect();
        assert_eq!(
            names,
            [
                Some("Sync_Enter_05_a".to_owned()),
                Some("Sync_Enter_10_b".to_owned()),
                Some("Sync_Enter_20_c".to_owned()),
                None
            ]
        );
        assert_eq!(s.run(hook, "Sync_Enter_05_a"), Outcome::Ok);
        assert_eq!(s.run(hook, "Sync_Enter_10_b"), Outcome::RetryLater);
        match s.run(hook, "Sync_Enter_20_c") {
            Outcome::Failed(why) => {
                assert!(
                    why.contains("exit status: 3") && why.ends_with("no network"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_script_past_its_timeout_is_killed() {
        let d = tmp("timeout");
        let s = Scripts::new(&d, &d.join("data"), Duration::from_millis(200));
        let hook = Hook {
            state: ScriptState::Idle,
            when: When::Enter,
        };
        script(&d, "Idle_Enter_00", "sleep 30");
        match s.run(hook, "Idle_Enter_00") {
            Outcome::Failed(why) => assert!(why.contains("timed out"), "{why}"),
            other => panic!("{other:?}"),
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn staged_scripts_replace_the_old_ones_only_when_activated() {
        let d = tmp("stage");
        let data = d.join("data");
        let mut s = Scripts::new(&d.join("etc"), &data, Duration::from_secs(5));
        let hook = Hook {
            state: ScriptState::ArtifactInstall,
            when: When::Enter,
        };
        script(
            &data.join("scripts"),
            "ArtifactInstall_Enter_00_old",
            "exit 0",
        );
        s.stage_reset().unwrap();
        s.stage_begin("ArtifactInstall_Enter_01_new").unwrap();
        s.stage_data(b"#!/bin/sh\nexit 0\n").unwrap();
        s.stage_end().unwrap();
        assert_eq!(
            s.find(hook, 0).unwrap().as_deref(),
            Some("ArtifactInstall_Enter_00_old"),
            "not active before the artifact verified"
        );
        s.activate().unwrap();
        assert_eq!(
            s.find(hook, 0).unwrap().as_deref(),
            Some("ArtifactInstall_Enter_01_new")
        );
        assert_eq!(s.find(hook, 1).unwrap(), None);
        assert_eq!(
            fs::read_to_string(data.join("scripts/version")).unwrap(),
            "3\n"
        );
        assert_eq!(s.run(hook, "ArtifactInstall_Enter_01_new"), Outcome::Ok);
        // Names that are not artifact scripts, or escape the directory.
        s.stage_reset().unwrap();
        for bad in [
            "Download_Enter_00",
            "ArtifactInstall_Enter_00_../../x",
            "notes",
        ] {
            let e = s.stage_begin(bad).unwrap_err();
            assert!(e.to_string().contains("state script named"), "{bad}: {e}");
        }
        // An artifact without scripts empties the directory.
        s.activate().unwrap();
        assert_eq!(s.find(hook, 0).unwrap(), None);
        let _ = fs::remove_dir_all(&d);
    }
}
