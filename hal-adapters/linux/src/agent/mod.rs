//! The update daemon (`updraft daemon`): `updraft-core`'s state machine
//! driven with blocking I/O on a Linux A/B device.
//!
//! The machine decides everything; this module only performs its actions:
//! HTTPS requests ([`http`]), downloads streamed through the artifact
//! reader into the inactive slot ([`device::SlotDevices`]), the state
//! record in two alternating copies ([`device::StateFile`]), and the
//! bootloader's trial-boot variables ([`device::BootEnv`]). On
//! [`Action::Reboot`] it runs the reboot command and returns
//! [`Exit::Rebooting`]; the next start picks up where the persisted record
//! says.
//!
//! Downloads that break off are resumed with `Range` from the last byte
//! fed to the reader, up to `MaxAttempts` times with a growing delay; a
//! 4xx or an artifact that fails a check ends the update at once.

pub mod config;
pub mod device;
pub mod http;
pub mod scripts;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use updraft_boot::control::SlotPartitions;
use updraft_core::api::Request;
use updraft_core::artifact::Reader;
use updraft_core::boot::{BootState, Trial, Verified};
use updraft_core::crypto::{SigningKey, VerifyingKey};
use updraft_core::install::{Install, Target};
use updraft_core::machine::{self, Action, Agent, Input, Millis};
use updraft_core::script::Hook;
use updraft_core::store::{DualStore, Installed, StateStore, UpdateState, RECORD_BUF};

use self::config::{BootLoader, Config};
use self::device::{BootEnv, SlotDevices, StateFile};
use self::http::{DownloadError, Http};
use self::scripts::{Outcome, Scripts};
use crate::boot_env::LockSpec;

/// What to run: the daemon, or one of the standalone commands (Mender's
/// `install`, `commit`, `rollback`), which drive the same machine without
/// a server.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Talk to the server until the device reboots.
    Daemon,
    /// Install this artifact file into the inactive slot and arm the trial
    /// boot; stops before the reboot.
    Install(PathBuf),
    /// After the reboot into the new image: make it permanent.
    Commit,
    /// Before or after the reboot: go back to the previous image.
    Rollback,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The reboot command ran: the device is going down (daemon).
    Rebooting,
    /// A standalone step is done and the device must reboot to go on.
    RebootNeeded,
    /// No update in progress (any more): what the device runs now, and why
    /// the last update failed, if it did.
    Idle {
        /// The installed artifact.
        installed: String,
        /// The failure, when the update just ended in one.
        failure: Option<String>,
    },
    /// A standalone command found nothing to act on.
    NothingToDo(String),
}

/// Where log lines go (the daemon writes them to standard error).
pub trait Log {
    /// One line for a person.
    fn info(&self, line: &str);
    /// Request-level detail, shown with `--verbose`.
    fn debug(&self, line: &str);
}

/// Logs to standard error, each line prefixed with `updraft: `.
pub struct Stderr {
    /// Show [`Log::debug`] lines too.
    pub verbose: bool,
}

impl Log for Stderr {
    fn info(&self, line: &str) {
        eprintln!("updraft: {line}");
    }
    fn debug(&self, line: &str) {
        if self.verbose {
            eprintln!("updraft: {line}");
        }
    }
}

/// Bytes per state-record copy in the state file.
const COPY: usize = RECORD_BUF;

fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// What the answer to the last action was.
enum Next {
    Boot(BootState),
    Response(u16, Vec<u8>),
    NetworkError,
    Timer,
    Done,
    Failed(String),
    Downloaded(Verified, Box<Installed>),
    DownloadFailed(String, bool),
    Script(Option<String>),
    RetryLater,
}

/// What [`Action::Fetch`] opened, for the [`Action::Download`] after it.
enum Opened {
    Http(http::Download),
    File(std::fs::File),
}

/// Everything [`run`] works with, opened and checked.
struct Device<'a> {
    cfg: &'a Config,
    log: &'a dyn Log,
    http: Option<Http>,
    keys: Vec<VerifyingKey>,
    slots: SlotDevices,
    boot: BootEnv,
    opened: Option<Opened>,
}

/// Runs `mode` until it is done: the daemon until the device reboots, a
/// standalone command until its step is (or an error it cannot go on
/// from, such as an unreadable state file).
pub fn run(cfg: &Config, mode: &Mode, log: &dyn Log) -> Result<Exit, String> {
    let daemon = matches!(mode, Mode::Daemon);
    if daemon {
        for key in &cfg.ignored_keys {
            log.info(&format!(
                "ignoring config key {key:?} (Updraft does not use it)"
            ));
        }
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
    let http = match (daemon, &cfg.server_url) {
        (false, _) => None,
        (true, Some(url)) => Some(Http::new(url, cfg.server_certificate.as_deref())?),
        (true, None) => {
            return Err("ServerURL is not set in the config: the daemon needs a server".into())
        }
    };
    // Standalone commands never talk to a server: no device key is made
    // for them, and none is used.
    let key = if daemon {
        let (key, made) = device::device_key(&cfg.device_key)?;
        if made {
            log.info(&format!(
                "made a new device key: {}",
                cfg.device_key.display()
            ));
        }
        key
    } else {
        SigningKey::p256_from_bytes(&[1; 32]).map_err(|e| e.to_string())?
    };
    let public_pem = if daemon {
        key.verifying_key()
            .to_pem()
            .map_err(|e| format!("device key {}: {e}", cfg.device_key.display()))?
    } else {
        String::new()
    };
    let device_type = device::file_value(&cfg.device_type_file, "device_type")?;
    let id_data = if daemon {
        device::identity(&cfg.identity_script)?
    } else {
        String::new()
    };
    let (inventory, failures) = if daemon {
        device::inventory(&cfg.inventory_scripts_dir)
    } else {
        (Vec::new(), Vec::new())
    };
    for f in failures {
        log.info(&format!("inventory script skipped: {f}"));
    }
    let inventory: Vec<(&str, &str)> = inventory
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let keys = cfg
        .verify_keys
        .iter()
        .map(|p| crate::artifact::load_key(p).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let [pa, pb] = cfg.boot_partitions;
    let parts = SlotPartitions::new(pa, pb).map_err(|e| e.to_string())?;
    let boot = match cfg.boot_loader {
        BootLoader::Uboot => BootEnv::Uboot {
            config: cfg.fw_env_config.clone(),
            lock: LockSpec::default(),
            parts,
        },
        BootLoader::Grub => BootEnv::Grub {
            dir: cfg.grubenv_dir.clone(),
            parts,
        },
    };
    let state_path = cfg.data_dir.join("state");
    let mut store = DualStore::new(
        StateFile::open(&state_path).map_err(|e| e.to_string())?,
        [0, COPY as u64],
        COPY,
    )
    .map_err(|e| format!("{}: {e}", state_path.display()))?;
    let record = store
        .load()
        .map_err(|e| format!("state record {}: {e}", state_path.display()))?;
    let installed = first_installed(&cfg.artifact_info_file, log)?;
    let boot_state = boot.state()?;
    log.info(&format!(
        "running slot {} ({}); {}; installed: {}",
        boot_state.active,
        SlotDevices::new(cfg.slots.clone())
            .path(boot_state.active)
            .display(),
        describe_trial(boot_state.trial),
        record
            .as_ref()
            .map_or(installed.artifact_name.as_str(), |r| r
                .installed
                .artifact_name
                .as_str()),
    ));

    let mcfg = machine::Config {
        device_type: &device_type,
        id_data: &id_data,
        public_key_pem: &public_pem,
        tenant_token: &cfg.tenant_token,
        payload_type: "rootfs-image",
        inventory: &inventory,
        update_poll: cfg.update_poll_seconds.saturating_mul(1000),
        inventory_poll: cfg.inventory_poll_seconds.saturating_mul(1000),
        retry: 1000,
        max_retry: cfg.retry_poll_seconds.saturating_mul(1000),
        server: daemon,
        max_attempts: cfg.max_attempts,
        scripts: true,
        script_retry_interval: cfg.script_retry_interval_seconds.saturating_mul(1000),
        script_retry_timeout: cfg.script_retry_timeout_seconds.saturating_mul(1000),
    };
    let in_progress = record
        .as_ref()
        .and_then(|r| r.update.as_ref())
        .map(|u| (u.state, u.standalone, u.reason.to_string()));
    // A standalone update past the user's decision (rolling back, or
    // reporting the end) is finished by whichever command runs next.
    let finishing = in_progress.as_ref().is_some_and(|(state, _, _)| {
        matches!(
            state,
            UpdateState::ArtifactRollback
                | UpdateState::ArtifactRollbackReboot
                | UpdateState::ArtifactVerifyRollbackReboot
                | UpdateState::ArtifactFailure
                | UpdateState::Cleanup
        )
    });
    let mut failure: Option<String> = None;
    match (mode, &in_progress) {
        (Mode::Daemon, Some((_, true, _))) => {
            return Err("a standalone update is in progress: `updraft commit` or \
                 `updraft rollback` finishes it"
                .into())
        }
        (Mode::Daemon, _) => {}
        (_, Some((_, false, _))) => {
            return Err(
                "the update in progress came from the server: the daemon finishes it".into(),
            )
        }
        (Mode::Install(_), Some((state, _, _))) if !finishing => {
            return Err(format!(
                "an update is in progress ({}): commit or roll it back first",
                state.name()
            ))
        }
        (Mode::Install(_), _) => {}
        (Mode::Commit | Mode::Rollback, None) => {
            return Ok(Exit::NothingToDo("no update in progress".into()))
        }
        (Mode::Commit | Mode::Rollback, Some((_, _, reason))) => {
            if finishing {
                failure = Some(if reason.is_empty() {
                    "rolled back".to_owned()
                } else {
                    reason.clone()
                });
            } else if matches!(mode, Mode::Commit)
                && !matches!(boot_state.trial, Trial::Running { .. })
            {
                return Err(
                    "the new image has not booted yet: reboot into it first, then commit".into(),
                );
            } else if matches!(mode, Mode::Rollback) && matches!(boot_state.trial, Trial::Armed(_))
            {
                // Not rebooted yet: disarm, and the machine finds at the
                // boot below that the new image never ran.
                boot.roll_back()?;
                log.info("disarmed the trial boot: the previous image stays");
            }
        }
    }
    let boot_state = boot.state()?;
    let mut agent = Agent::new(mcfg, &key, record, installed);
    let mut dev = Device {
        cfg,
        log,
        http,
        keys,
        slots: SlotDevices::new(cfg.slots.clone()),
        boot,
        opened: None,
    };
    dev.slots.scripts = Some(Scripts::new(
        &cfg.rootfs_scripts_dir,
        &cfg.data_dir,
        Duration::from_secs(cfg.script_timeout_seconds),
    ));
    let mut next = Next::Boot(boot_state);
    let mut last_state: Option<UpdateState> = agent.update_state();
    let mut install_path = match mode {
        Mode::Install(p) => Some(
            p.to_str()
                .ok_or_else(|| format!("{}: not a UTF-8 path", p.display()))?
                .to_owned(),
        ),
        _ => None,
    };
    loop {
        let t = now();
        let action = match next {
            Next::Boot(boot) => agent.handle(Input::Boot { boot, image: None }, t),
            Next::Response(status, ref body) => agent.handle(Input::Response { status, body }, t),
            Next::NetworkError => agent.handle(Input::NetworkError, t),
            Next::Timer => match install_path.take() {
                Some(ref path) => agent.handle(Input::InstallLocal { path }, t),
                None => agent.handle(Input::Timer, t),
            },
            Next::Done => agent.handle(Input::Done, t),
            Next::Failed(ref why) => {
                failure = Some(why.clone());
                agent.handle(Input::Failed(why), t)
            }
            Next::Downloaded(proof, next) => {
                agent.handle(Input::Downloaded { proof, next: *next }, t)
            }
            Next::DownloadFailed(ref reason, retry) => {
                failure = Some(reason.clone());
                agent.handle(Input::DownloadFailed { reason, retry }, t)
            }
            Next::Script(ref name) => agent.handle(
                Input::Script {
                    name: name.as_deref(),
                },
                t,
            ),
            Next::RetryLater => agent.handle(Input::RetryLater, t),
        };
        next = match action {
            Action::Send(req) => dev.send(&req),
            Action::Fetch { uri, .. } => dev.fetch(uri),
            Action::Download { uri, target, .. } => dev.download(uri, target),
            Action::FindScript { hook, index } => dev.find_script(hook, index),
            Action::RunScript { hook, name } => dev.run_script(hook, name),
            Action::Persist(rec) => {
                let state = rec.update.as_ref().map(|u| u.state);
                if state != last_state {
                    log_state(
                        log,
                        state,
                        rec.update.as_ref().map(|u| u.artifact_name.as_str()),
                    );
                    last_state = state;
                }
                match store.save(rec) {
                    Ok(()) => Next::Done,
                    Err(e) => Next::Failed(format!("saving the state record: {e}")),
                }
            }
            Action::Arm { slot, proof } => dev.step(
                dev.boot.arm(slot, proof),
                &format!("armed a trial boot of slot {slot}"),
            ),
            Action::Confirm => dev.step(dev.boot.confirm(), "committed: the new image stays"),
            Action::RollBack => dev.step(
                dev.boot.roll_back(),
                "rolled back: the previous image boots next",
            ),
            Action::CheckHealth => match mode {
                Mode::Commit => Next::Done,
                Mode::Rollback => Next::Failed("rolled back by the user".into()),
                _ => dev.health(),
            },
            Action::Reboot => {
                if !daemon {
                    return Ok(Exit::RebootNeeded);
                }
                dev.reboot()?;
                return Ok(Exit::Rebooting);
            }
            Action::Wait { .. } if !daemon && install_path.is_some() => Next::Timer,
            Action::Wait { .. } if !daemon => {
                return Ok(Exit::Idle {
                    installed: agent.record().installed.artifact_name.to_string(),
                    failure: failure.take(),
                });
            }
            Action::Wait { until } => {
                let ms = until.saturating_sub(now());
                std::thread::sleep(Duration::from_millis(ms));
                Next::Timer
            }
            other => {
                return Err(format!(
                    "the state machine asked for something this daemon cannot do: {other:?}"
                ))
            }
        };
    }
}

/// The installed artifact's name (Mender's `show-artifact`): from the
/// state record, or `artifact_info` before the first update.
pub fn show_artifact(cfg: &Config) -> Result<String, String> {
    let state_path = cfg.data_dir.join("state");
    if state_path.exists() {
        let file = StateFile::open(&state_path).map_err(|e| e.to_string())?;
        let mut store = DualStore::new(file, [0, COPY as u64], COPY)
            .map_err(|e| format!("{}: {e}", state_path.display()))?;
        if let Some(r) = store
            .load()
            .map_err(|e| format!("state record {}: {e}", state_path.display()))?
        {
            return Ok(r.installed.artifact_name.to_string());
        }
    }
    device::file_value(&cfg.artifact_info_file, "artifact_name")
}

/// What the device runs before any update: `artifact_info`'s name.
fn first_installed(path: &Path, log: &dyn Log) -> Result<Installed, String> {
    let mut installed = Installed::default();
    let name = match device::file_value(path, "artifact_name") {
        Ok(n) => n,
        Err(e) => {
            log.info(&format!(
                "{e}: the running image reports artifact_name \"unknown\""
            ));
            "unknown".to_owned()
        }
    };
    installed
        .artifact_name
        .push_str(&name)
        .map_err(|()| format!("{}: artifact_name is too long", path.display()))?;
    Ok(installed)
}

fn describe_trial(t: Trial) -> String {
    match t {
        Trial::None => "no trial boot".into(),
        Trial::Armed(s) => format!("trial boot of slot {s} armed"),
        Trial::Running { boot_count } => format!("trial boot (boot {boot_count})"),
    }
}

fn log_state(log: &dyn Log, state: Option<UpdateState>, name: Option<&str>) {
    match (state, name) {
        (Some(s), Some(n)) => log.info(&format!("{n}: {}", s.name())),
        _ => log.info("idle: no update in progress"),
    }
}

impl Device<'_> {
    fn step(&self, r: Result<(), String>, ok: &str) -> Next {
        match r {
            Ok(()) => {
                self.log.info(ok);
                Next::Done
            }
            Err(e) => {
                self.log.info(&format!("bootloader: {e}"));
                Next::Failed(e)
            }
        }
    }

    fn send(&self, req: &Request<'_>) -> Next {
        let Some(http) = &self.http else {
            return Next::NetworkError;
        };
        match http.send(req) {
            Ok((status, body)) => {
                self.log
                    .debug(&format!("{} {} -> {status}", req.method.as_str(), req.path));
                self.narrate(req, status, &body);
                Next::Response(status, body)
            }
            Err(e) => {
                self.log.info(&format!("network: {e}"));
                Next::NetworkError
            }
        }
    }

    /// One line for the events a person watching the device cares about.
    fn narrate(&self, req: &Request<'_>, status: u16, body: &[u8]) {
        let path = req.path;
        if path.ends_with("/authentication/auth_requests") {
            match status {
                200 => self.log.info("authorized by the server"),
                401 => self
                    .log
                    .info("not authorized yet: the device waits to be accepted"),
                s => self.log.info(&format!("authorization answered {s}")),
            }
        } else if path.contains("/deployments/device/deployments/next") && status == 200 {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let name = v["artifact"]["artifact_name"].as_str().unwrap_or("?");
            self.log.info(&format!("update available: {name}"));
        } else if path.ends_with("/status") {
            let v: serde_json::Value = serde_json::from_slice(req.body).unwrap_or_default();
            let mut s = v["status"].as_str().unwrap_or("?").to_owned();
            if let Some(sub) = v["substate"].as_str() {
                s = format!("{s} ({sub})");
            }
            match status {
                204 => self.log.info(&format!("reported {s}")),
                409 => self
                    .log
                    .info(&format!("reported {s}: the deployment was aborted (409)")),
                c => self.log.info(&format!("reporting {s} answered {c}")),
            }
        }
    }

    /// Opens the artifact (the GET, or the local file) for the download
    /// that follows, and starts staging its state scripts afresh.
    fn fetch(&mut self, uri: &str) -> Next {
        self.opened = None;
        if let Some(s) = self.slots.scripts.as_mut() {
            if let Err(e) = s.stage_reset() {
                return Next::DownloadFailed(format!("state scripts: {e}"), false);
            }
        }
        let opened = match &self.http {
            Some(http) => match http.download(uri, 0) {
                Ok(dl) => Opened::Http(dl),
                Err(DownloadError::Fatal(e)) => return Next::DownloadFailed(e, false),
                Err(DownloadError::Retry(e)) => {
                    self.log.info(&format!("download: {e}"));
                    return Next::DownloadFailed(e, true);
                }
            },
            None => match std::fs::File::open(uri) {
                Ok(f) => Opened::File(f),
                Err(e) => return Next::DownloadFailed(format!("{uri}: {e}"), false),
            },
        };
        self.opened = Some(opened);
        Next::Done
    }

    fn find_script(&self, hook: Hook, index: u8) -> Next {
        let Some(s) = self.slots.scripts.as_ref() else {
            return Next::Script(None);
        };
        match s.find(hook, index) {
            Ok(name) => Next::Script(name),
            Err(e) => {
                // An unreadable scripts directory: say so, run none.
                self.log.info(&format!("state scripts for {hook}: {e}"));
                Next::Script(None)
            }
        }
    }

    fn run_script(&self, hook: Hook, name: &str) -> Next {
        let Some(s) = self.slots.scripts.as_ref() else {
            return Next::Done;
        };
        self.log.info(&format!("running state script {name}"));
        match s.run(hook, name) {
            Outcome::Ok => Next::Done,
            Outcome::RetryLater => {
                self.log.info(&format!(
                    "state script {name} asks to retry later (exit 21)"
                ));
                Next::RetryLater
            }
            Outcome::Failed(why) => {
                let why = format!("{name}: {why}");
                if hook.fatal() {
                    self.log.info(&format!("state script {why}"));
                } else {
                    self.log
                        .info(&format!("state script {why} (ignored in {hook})"));
                }
                Next::Failed(why)
            }
        }
    }

    fn download(&mut self, uri: &str, target: Target<'_>) -> Next {
        let slot = target.slot;
        self.log.info(&format!(
            "downloading {} into slot {slot} ({})",
            http::redact(uri),
            self.slots.path(slot).display()
        ));
        match self.download_into(uri, target) {
            Ok((proof, installed, bytes)) => {
                self.log.info(&format!(
                    "downloaded and verified {bytes} bytes: {}",
                    installed.artifact_name
                ));
                // Verified: its state scripts may run now.
                if let Some(s) = self.slots.scripts.as_mut() {
                    if let Err(e) = s.activate() {
                        let why = format!("installing the artifact's state scripts: {e}");
                        self.log.info(&why);
                        return Next::DownloadFailed(why, false);
                    }
                }
                Next::Downloaded(proof, Box::new(installed))
            }
            Err((reason, retry)) => {
                self.log.info(&format!("download failed: {reason}"));
                Next::DownloadFailed(reason, retry)
            }
        }
    }

    /// The artifact streamed through the reader into the slot, resuming
    /// with `Range` after a break.
    fn download_into(
        &mut self,
        uri: &str,
        target: Target<'_>,
    ) -> Result<(Verified, Installed, u64), (String, bool)> {
        let reader: Reader<'_> = Reader::with_keys(&self.keys);
        let mut install = Install::new(reader, target);
        let mut fed: u64 = 0;
        let mut failures: u8 = 0;
        let mut buf = vec![0u8; 256 * 1024];
        let mut shown = 0u64;
        let max = self.cfg.max_attempts.max(1);
        'attempt: loop {
            if failures > 0 {
                if failures >= max {
                    return Err((format!("gave up after {failures} attempts"), true));
                }
                let delay = 1u64 << failures.min(6);
                let delay = delay.min(self.cfg.retry_poll_seconds);
                self.log
                    .info(&format!("resuming at byte {fed} in {delay} s"));
                std::thread::sleep(Duration::from_secs(delay));
            }
            let opened = self.opened.take();
            let Some(http) = &self.http else {
                let file = match opened {
                    Some(Opened::File(f)) => f,
                    _ => std::fs::File::open(uri).map_err(|e| (format!("{uri}: {e}"), false))?,
                };
                return install_file(&mut self.slots, uri, file, install);
            };
            let got = match opened {
                Some(Opened::Http(dl)) if fed == 0 => Ok(dl),
                _ => http.download(uri, fed),
            };
            let mut dl = match got {
                Ok(dl) => dl,
                Err(DownloadError::Fatal(e)) => return Err((e, false)),
                Err(DownloadError::Retry(e)) => {
                    self.log.info(&format!("download: {e}"));
                    failures += 1;
                    continue;
                }
            };
            if dl.status == 200 && fed > 0 {
                // The server ignored the range: skip what was fed.
                let skipped = std::io::copy(&mut (&mut dl.body).take(fed), &mut std::io::sink());
                if skipped.ok() != Some(fed) {
                    failures += 1;
                    continue;
                }
            }
            let total = dl
                .total
                .map(|t| if dl.status == 206 { t } else { t.max(fed) });
            loop {
                let n = match dl.body.read(&mut buf) {
                    Ok(0) => break 'attempt,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.log
                            .info(&format!("download broke off at byte {fed}: {e}"));
                        failures += 1;
                        continue 'attempt;
                    }
                };
                install
                    .feed(&buf[..n], &mut self.slots)
                    .map_err(|e| (e.to_string(), false))?;
                fed += n as u64;
                if let Some(total) = total.filter(|t| *t > 0) {
                    let tenth = fed * 10 / total;
                    if tenth > shown {
                        shown = tenth;
                        self.log
                            .info(&format!("  {}% of {total} bytes", tenth * 10));
                    }
                }
            }
        }
        let (proof, installed) = install
            .finish::<std::io::Error>()
            .map_err(|e| (e.to_string(), false))?;
        Ok((proof, installed, fed))
    }
}

/// Standalone: the artifact from a local file.
fn install_file(
    slots: &mut SlotDevices,
    path: &str,
    mut file: std::fs::File,
    mut install: Install<'_, '_, VerifyingKey, updraft_core::crypto::DefaultSha256>,
) -> Result<(Verified, Installed, u64), (String, bool)> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut fed = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((format!("{path}: {e}"), false)),
        };
        install
            .feed(&buf[..n], slots)
            .map_err(|e| (e.to_string(), false))?;
        fed += n as u64;
    }
    let (proof, installed) = install
        .finish::<std::io::Error>()
        .map_err(|e| (e.to_string(), false))?;
    Ok((proof, installed, fed))
}

impl Device<'_> {
    fn health(&self) -> Next {
        let Some(cmd) = &self.cfg.health_check_command else {
            self.log
                .info("health check: none configured, the image booted");
            return Next::Done;
        };
        let out = std::process::Command::new(&cmd[0]).args(&cmd[1..]).output();
        match out {
            Ok(o) if o.status.success() => {
                self.log.info("health check passed");
                Next::Done
            }
            Ok(o) => {
                let why = format!(
                    "health check {:?} failed ({}): {}",
                    cmd,
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                self.log.info(&why);
                Next::Failed(why)
            }
            Err(e) => {
                let why = format!("health check {:?} could not run: {e}", cmd);
                self.log.info(&why);
                Next::Failed(why)
            }
        }
    }

    fn reboot(&self) -> Result<(), String> {
        let cmd = &self.cfg.reboot_command;
        self.log.info(&format!("rebooting: {}", cmd.join(" ")));
        let status = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .status()
            .map_err(|e| format!("reboot command {cmd:?}: {e}"))?;
        if !status.success() {
            return Err(format!("reboot command {cmd:?} failed ({status})"));
        }
        Ok(())
    }
}
