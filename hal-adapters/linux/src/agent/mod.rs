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

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use updraft_boot::control::SlotPartitions;
use updraft_core::api::Request;
use updraft_core::artifact::Reader;
use updraft_core::boot::{BootState, Trial, Verified};
use updraft_core::crypto::VerifyingKey;
use updraft_core::install::{Install, Target};
use updraft_core::machine::{self, Action, Agent, Input, Millis};
use updraft_core::store::{DualStore, Installed, StateStore, UpdateState, RECORD_BUF};

use self::config::{BootLoader, Config};
use self::device::{BootEnv, SlotDevices, StateFile};
use self::http::{DownloadError, Http};
use crate::boot_env::LockSpec;

/// How a run of the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The reboot command ran: the device is going down.
    Rebooting,
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
}

/// Everything [`run`] works with, opened and checked.
struct Device<'a> {
    cfg: &'a Config,
    log: &'a dyn Log,
    http: Http,
    keys: Vec<VerifyingKey>,
    slots: SlotDevices,
    boot: BootEnv,
}

/// Runs the daemon until the device reboots (or an error it cannot go on
/// from, such as an unreadable state file).
pub fn run(cfg: &Config, log: &dyn Log) -> Result<Exit, String> {
    for key in &cfg.ignored_keys {
        log.info(&format!(
            "ignoring config key {key:?} (Updraft does not use it)"
        ));
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
    let (key, made) = device::device_key(&cfg.device_key)?;
    if made {
        log.info(&format!(
            "made a new device key: {}",
            cfg.device_key.display()
        ));
    }
    let public_pem = key
        .verifying_key()
        .to_pem()
        .map_err(|e| format!("device key {}: {e}", cfg.device_key.display()))?;
    let device_type = device::file_value(&cfg.device_type_file, "device_type")?;
    let id_data = device::identity(&cfg.identity_script)?;
    let (inventory, failures) = device::inventory(&cfg.inventory_scripts_dir);
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
        server: true,
        max_attempts: cfg.max_attempts,
    };
    let mut agent = Agent::new(mcfg, &key, record, installed);
    let mut dev = Device {
        cfg,
        log,
        http: Http::new(&cfg.server_url, cfg.server_certificate.as_deref())?,
        keys,
        slots: SlotDevices::new(cfg.slots.clone()),
        boot,
    };
    let mut next = Next::Boot(boot_state);
    let mut last_state: Option<UpdateState> = agent.update_state();
    loop {
        let t = now();
        let action = match next {
            Next::Boot(boot) => agent.handle(Input::Boot { boot, image: None }, t),
            Next::Response(status, ref body) => agent.handle(Input::Response { status, body }, t),
            Next::NetworkError => agent.handle(Input::NetworkError, t),
            Next::Timer => agent.handle(Input::Timer, t),
            Next::Done => agent.handle(Input::Done, t),
            Next::Failed(ref why) => agent.handle(Input::Failed(why), t),
            Next::Downloaded(proof, next) => {
                agent.handle(Input::Downloaded { proof, next: *next }, t)
            }
            Next::DownloadFailed(ref reason, retry) => {
                agent.handle(Input::DownloadFailed { reason, retry }, t)
            }
        };
        next = match action {
            Action::Send(req) => dev.send(&req),
            Action::Download { uri, target, .. } => dev.download(uri, target),
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
            Action::CheckHealth => dev.health(),
            Action::Reboot => {
                dev.reboot()?;
                return Ok(Exit::Rebooting);
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
        match self.http.send(req) {
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
            let s = v["status"].as_str().unwrap_or("?");
            match status {
                204 => self.log.info(&format!("reported {s}")),
                409 => self
                    .log
                    .info(&format!("reported {s}: the deployment was aborted (409)")),
                c => self.log.info(&format!("reporting {s} answered {c}")),
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
            let mut dl = match self.http.download(uri, fed) {
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
