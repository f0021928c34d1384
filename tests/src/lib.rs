//! # updraft-e2e: a simulated device for whole-update tests
//!
//! A device here is: two A/B slots, a bootloader whose state lives on
//! simulated storage (U-Boot's redundant environment, or Mender's double
//! GRUB environment, written by `updraft-boot`'s codecs; or MCUboot's
//! image trailers and a swap of the two slots, see [`mcuboot`]), the agent's
//! state store (`updraft-core`'s [`DualStore`]), a kernel that boots only
//! a complete image, a clock, and a scripted server speaking the Mender
//! device API. Every byte any of them writes goes through one [`Power`]
//! rail, which counts write operations and can cut power at any byte of
//! any of them.
//!
//! [`Sim::run`] powers the device on, lets the bootloader pick a slot,
//! "boots" it, and drives the real [`Agent`] (the same state machine a
//! device runs) until the update is over, rebooting whenever the agent
//! asks or the power fails. [`Sim::check`] then checks what must hold
//! after any cut: the device boots a complete, verified image, the agent's
//! installed artifact matches it, the server was told the truth, and no
//! state record was lost.
#![allow(missing_docs)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use updraft_boot::change::Change;
use updraft_boot::control::{
    grub_script_boot, uboot_script_boot, GrubControl, SlotPartitions, UbootControl,
};
use updraft_boot::mender_grub::{FileId, GrubenvDir, MenderGrubenv, WORK_SIZE};
use updraft_boot::storage::EnvStorage;
use updraft_boot::uboot::{encode_copy, Env, EnvLocation, Redundancy, UbootEnv};
use updraft_core::api::{self, Method, Request};
use updraft_core::artifact::Reader;
use updraft_core::boot::{BootControl, Slot};
use updraft_core::crypto::{DefaultSha256, Sha256, SigningKey};
use updraft_core::install::{Install, InstallError, SlotWriter};
use updraft_core::machine::{Action, Agent, Config, Input, Millis};
use updraft_core::storage::Storage;
use updraft_core::store::{DualStore, Installed, Provide, StateStore};

pub mod mcuboot;
pub use mcuboot::Mcuboot;

// ------------------------------------------------------------------ power

/// One write or erase that reached the power rail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// The device written ("slot B", "state store", "U-Boot env 1"...).
    pub device: &'static str,
    /// Bytes in the operation.
    pub len: usize,
}

/// A planned cut: during write operation number `op` (counted from power
/// on of the first boot, across all devices), after `bytes` of it reached
/// the storage (0: before it; `len`: right after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub op: usize,
    pub bytes: usize,
}

/// The device's power rail: counts operations and cuts as planned.
#[derive(Debug, Default)]
pub struct Power {
    ops: RefCell<Vec<Op>>,
    off: Cell<bool>,
    cuts: RefCell<Vec<Cut>>,
}

impl Power {
    fn start(&self, device: &'static str, len: usize) -> Result<(usize, bool), SimError> {
        if self.off.get() {
            return Err(SimError::PowerLost);
        }
        let index = {
            let mut ops = self.ops.borrow_mut();
            ops.push(Op { device, len });
            ops.len() - 1
        };
        let cut = self.cuts.borrow().iter().find(|c| c.op == index).copied();
        match cut {
            Some(c) => {
                self.off.set(true);
                Ok((c.bytes.min(len), true))
            }
            None => Ok((len, false)),
        }
    }

    pub fn is_off(&self) -> bool {
        self.off.get()
    }

    /// Plans the cuts of a run (operations counted from the first on the
    /// rail), replacing any planned before.
    pub fn plan(&self, cuts: Vec<Cut>) {
        *self.cuts.borrow_mut() = cuts;
    }

    /// Powers back on after a cut (the next reset).
    pub fn restore(&self) {
        self.off.set(false);
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.borrow().clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    PowerLost,
    OutOfBounds,
    /// A flash erase not aligned to the erase sectors.
    Unaligned,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::PowerLost => f.write_str("power lost"),
            SimError::OutOfBounds => f.write_str("out of bounds"),
            SimError::Unaligned => f.write_str("erase not aligned to the sectors"),
        }
    }
}

impl std::error::Error for SimError {}

/// A region of simulated storage on the power rail (cheap to clone: the
/// clones share the bytes).
#[derive(Clone)]
pub struct Flash {
    name: &'static str,
    data: Rc<RefCell<Vec<u8>>>,
    power: Rc<Power>,
    /// NOR flash: a write programs bits 1 → 0 only (new = old & data), so
    /// writing over unerased bytes corrupts them as on a real chip.
    nor: bool,
}

impl Flash {
    pub fn new(name: &'static str, size: usize, fill: u8, power: &Rc<Power>) -> Flash {
        Flash {
            name,
            data: Rc::new(RefCell::new(vec![fill; size])),
            power: power.clone(),
            nor: false,
        }
    }

    /// NOR flash of `size` bytes, erased (0xff): writes only clear bits,
    /// erases set them back.
    pub fn nor(name: &'static str, size: usize, power: &Rc<Power>) -> Flash {
        Flash {
            nor: true,
            ..Flash::new(name, size, 0xff, power)
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.data.borrow().clone()
    }

    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, SimError> {
        let start = usize::try_from(offset).map_err(|_| SimError::OutOfBounds)?;
        let end = start.checked_add(len).ok_or(SimError::OutOfBounds)?;
        if end > self.data.borrow().len() {
            return Err(SimError::OutOfBounds);
        }
        Ok(start..end)
    }

    fn do_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), SimError> {
        let r = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.data.borrow()[r]);
        Ok(())
    }

    fn do_write(&mut self, offset: u64, data: &[u8]) -> Result<(), SimError> {
        let r = self.range(offset, data.len())?;
        let (allowed, lost) = self.power.start(self.name, data.len())?;
        let mut mem = self.data.borrow_mut();
        let dst = &mut mem[r][..allowed];
        if self.nor {
            dst.iter_mut().zip(data).for_each(|(d, s)| *d &= s);
        } else {
            dst.copy_from_slice(&data[..allowed]);
        }
        drop(mem);
        if lost {
            return Err(SimError::PowerLost);
        }
        Ok(())
    }

    fn do_erase(&mut self, offset: u64, len: u64) -> Result<(), SimError> {
        let len = usize::try_from(len).map_err(|_| SimError::OutOfBounds)?;
        let r = self.range(offset, len)?;
        let (allowed, lost) = self.power.start(self.name, len)?;
        self.data.borrow_mut()[r][..allowed].fill(0xff);
        if lost {
            return Err(SimError::PowerLost);
        }
        Ok(())
    }

    fn do_sync(&mut self) -> Result<(), SimError> {
        if self.power.is_off() {
            Err(SimError::PowerLost)
        } else {
            Ok(())
        }
    }
}

impl Storage for Flash {
    type Error = SimError;
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), SimError> {
        self.do_read(offset, buf)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SimError> {
        self.do_write(offset, data)
    }
    fn erase(&mut self, offset: u64, len: u64) -> Result<(), SimError> {
        self.do_erase(offset, len)
    }
    fn sync(&mut self) -> Result<(), SimError> {
        self.do_sync()
    }
}

/// A block device on the power rail (the U-Boot env partition here):
/// erase does nothing, as on a file or an eMMC partition.
#[derive(Clone)]
pub struct BlockDev(pub Flash);

impl Storage for BlockDev {
    type Error = SimError;
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), SimError> {
        self.0.do_read(offset, buf)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SimError> {
        self.0.do_write(offset, data)
    }
    fn sync(&mut self) -> Result<(), SimError> {
        self.0.do_sync()
    }
}

impl EnvStorage for BlockDev {
    fn size(&mut self) -> Option<u64> {
        Some(self.0.data.borrow().len() as u64)
    }
}

// ----------------------------------------------------------------- images

/// Size of each slot.
pub const SLOT_SIZE: usize = 16 * 1024;
const IMAGE_HEADER: usize = 128;

/// How an image behaves once booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Boots and passes its health check.
    Good,
    /// Boots, but its health check fails.
    FailsCheck,
    /// Never comes up (kernel panic): the watchdog resets the board.
    FailsBoot,
}

/// A self-checking image: a header with its name, behaviour, length and
/// SHA-256, then the body. The simulated kernel boots it only when it is
/// complete and its digest matches.
pub fn make_image(name: &str, health: Health, body_len: usize) -> Vec<u8> {
    let mut body = vec![0u8; body_len];
    let mut x = name
        .bytes()
        .fold(0x9e37_79b9_u32, |a, b| a.rotate_left(5) ^ u32::from(b));
    for byte in body.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    let digest = DefaultSha256::digest(&body);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut head = format!("IMG {name} {health:?} {body_len} {hex}\n").into_bytes();
    assert!(head.len() <= IMAGE_HEADER);
    head.resize(IMAGE_HEADER, b' ');
    head.extend_from_slice(&body);
    head
}

/// What the kernel finds in a slot: the image's name and behaviour, or
/// `None` when the slot does not hold a complete, intact image.
pub fn inspect(slot: &[u8]) -> Option<(String, Health)> {
    let head = std::str::from_utf8(slot.get(..IMAGE_HEADER)?).ok()?;
    let mut f = head.trim_end().split(' ');
    if f.next()? != "IMG" {
        return None;
    }
    let name = f.next()?.to_string();
    let health = match f.next()? {
        "Good" => Health::Good,
        "FailsCheck" => Health::FailsCheck,
        "FailsBoot" => Health::FailsBoot,
        _ => return None,
    };
    let len: usize = f.next()?.parse().ok()?;
    let hex = f.next()?;
    let body = slot.get(IMAGE_HEADER..IMAGE_HEADER + len)?;
    let digest = DefaultSha256::digest(body);
    let want: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    (want == hex).then_some((name, health))
}

/// The A/B slots as the agent's [`SlotWriter`].
pub struct Disk {
    pub a: Flash,
    pub b: Flash,
    current: Option<Slot>,
    pos: u64,
    /// `begin` erases the slot first (flash; a block device needs not).
    erase_on_begin: bool,
}

impl Disk {
    /// Two block-device slots (zero-filled), `release-1` in A.
    pub fn block(power: &Rc<Power>) -> Disk {
        let a = Flash::new("slot A", SLOT_SIZE, 0, power);
        let old = make_image(OLD, Health::Good, 6000);
        a.data.borrow_mut()[..old.len()].copy_from_slice(&old);
        Disk {
            a,
            b: Flash::new("slot B", SLOT_SIZE, 0, power),
            current: None,
            pos: 0,
            erase_on_begin: false,
        }
    }

    /// Two flash slots that `begin` erases before writing.
    pub fn flash(a: Flash, b: Flash) -> Disk {
        Disk {
            a,
            b,
            current: None,
            pos: 0,
            erase_on_begin: true,
        }
    }

    pub fn slot(&self, s: Slot) -> &Flash {
        match s {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }
}

impl SlotWriter for Disk {
    type Error = String;
    fn begin(&mut self, slot: Slot, size: u64) -> Result<(), String> {
        if size > SLOT_SIZE as u64 {
            return Err(format!("image of {size} bytes does not fit the slot"));
        }
        self.current = Some(slot);
        self.pos = 0;
        if self.erase_on_begin {
            let mut f = self.slot(slot).clone();
            Storage::erase(&mut f, 0, SLOT_SIZE as u64).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let slot = self.current.ok_or("write before begin")?;
        let mut f = self.slot(slot).clone();
        Storage::write(&mut f, self.pos, data).map_err(|e| e.to_string())?;
        self.pos += data.len() as u64;
        Ok(())
    }
    fn finish(&mut self) -> Result<(), String> {
        let slot = self.current.ok_or("finish before begin")?;
        let mut f = self.slot(slot).clone();
        Storage::sync(&mut f).map_err(|e| e.to_string())
    }
}

// ------------------------------------------------------------- bootloaders

pub const PARTS: SlotPartitions = match SlotPartitions::new(2, 3) {
    Ok(p) => p,
    Err(_) => panic!("2 and 3 differ"),
};

/// A bootloader whose state lives on the power rail.
pub trait Loader {
    type Ctl<'a>: BootControl
    where
        Self: 'a;
    /// What this is, for messages.
    fn name(&self) -> &'static str;
    /// Runs the boot logic (the same saves, in the same order, as the
    /// real script); returns the slot it boots.
    fn boot(&mut self) -> Result<Slot, String>;
    /// The agent's [`BootControl`].
    fn control(&mut self) -> Self::Ctl<'_>;
    /// The two slots, `release-1` installed in A (the factory image).
    fn disk(&self, power: &Rc<Power>) -> Disk {
        Disk::block(power)
    }
    /// Where the kernel image starts in a slot (after the bootloader's
    /// image header, for MCUboot).
    fn image_offset(&self) -> usize {
        0
    }
    /// Whether the platform tells the agent which image runs
    /// (`Input::Boot { image }`): needed where the slot does not say it,
    /// as with MCUboot, which always runs the primary slot.
    fn names_image(&self) -> bool {
        false
    }
    /// What the bootloader did at the last [`boot`](Loader::boot), one line
    /// per step, for the trace (drained).
    fn log(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// The update payload that carries the kernel image `image` (made by
    /// [`make_image`]): the image itself, or the bootloader's signed image
    /// around it.
    fn payload(image: Vec<u8>) -> Vec<u8>
    where
        Self: Sized,
    {
        image
    }
}

/// U-Boot with meta-mender's redundant environment and our `boot.cmd`.
pub struct Uboot {
    pub env1: Flash,
    pub env2: Flash,
    buf: Vec<u8>,
}

pub const UBOOT_ENV_SIZE: usize = 0x1000;

impl Uboot {
    pub fn new(power: &Rc<Power>) -> Uboot {
        let defaults = [
            Change::set("bootcount", "0"),
            Change::set("bootlimit", "1"),
            Change::set("mender_boot_part", "2"),
            Change::set("mender_boot_part_hex", "2"),
            Change::set("mender_check_saveenv_canary", "1"),
            Change::set("upgrade_available", "0"),
        ];
        let mut copy = vec![0u8; UBOOT_ENV_SIZE];
        encode_copy(
            &mut copy,
            Redundancy::Redundant,
            1,
            Env::empty(),
            &defaults,
            0xff,
        )
        .unwrap();
        let env1 = Flash::new("U-Boot env 1", UBOOT_ENV_SIZE, 0, power);
        env1.data.borrow_mut().copy_from_slice(&copy);
        let env2 = Flash::new("U-Boot env 2", UBOOT_ENV_SIZE, 0, power);
        Uboot {
            env1,
            env2,
            buf: vec![0u8; UBOOT_ENV_SIZE],
        }
    }

    fn env(&self) -> UbootEnv<BlockDev> {
        UbootEnv::redundant(
            EnvLocation {
                storage: BlockDev(self.env1.clone()),
                offset: 0,
            },
            EnvLocation {
                storage: BlockDev(self.env2.clone()),
                offset: 0,
            },
            UBOOT_ENV_SIZE,
        )
    }
}

impl Loader for Uboot {
    type Ctl<'a> = UbootControl<'a, BlockDev>;
    fn name(&self) -> &'static str {
        "U-Boot"
    }
    fn boot(&mut self) -> Result<Slot, String> {
        let mut env = self.env();
        uboot_script_boot(&mut env, &mut self.buf, PARTS)
            .map(|b| b.slot)
            .map_err(|e| e.to_string())
    }
    fn control(&mut self) -> UbootControl<'_, BlockDev> {
        let env = self.env();
        UbootControl::new(env, &mut self.buf, PARTS)
    }
}

/// Mender's double GRUB environment (six files) on the power rail. A
/// replace cut by the power leaves the file truncated to the bytes that
/// made it (emptied, then a prefix of the new content).
#[derive(Clone)]
pub struct GrubFiles {
    files: Rc<RefCell<[Vec<u8>; 6]>>,
    power: Rc<Power>,
}

impl GrubenvDir for GrubFiles {
    type Error = SimError;
    fn read(&mut self, file: FileId, buf: &mut [u8]) -> Result<usize, SimError> {
        let files = self.files.borrow();
        let f = &files[file.index()];
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Ok(f.len())
    }
    fn replace(&mut self, file: FileId, data: &[u8]) -> Result<(), SimError> {
        let (allowed, lost) = self.power.start("grubenv file", data.len())?;
        self.files.borrow_mut()[file.index()] = data[..allowed].to_vec();
        if lost {
            return Err(SimError::PowerLost);
        }
        Ok(())
    }
}

/// GRUB with Mender's double environment and our `grub.cfg`.
pub struct Grub {
    pub dir: GrubFiles,
    work: Vec<u8>,
}

impl Grub {
    pub fn new(power: &Rc<Power>) -> Grub {
        let dir = GrubFiles {
            files: Rc::new(RefCell::new(Default::default())),
            power: power.clone(),
        };
        let mut work = vec![0u8; WORK_SIZE];
        // Provisioned off the rail (it is part of the factory image).
        let quiet = Rc::new(Power::default());
        let mut env = MenderGrubenv::new(GrubFiles {
            files: dir.files.clone(),
            power: quiet,
        });
        env.provision(
            &mut work,
            &[
                Change::set("bootcount", "0"),
                Change::set("mender_boot_part", "2"),
                Change::set("upgrade_available", "0"),
            ],
        )
        .unwrap();
        Grub { dir, work }
    }
}

impl Loader for Grub {
    type Ctl<'a> = GrubControl<'a, GrubFiles>;
    fn name(&self) -> &'static str {
        "GRUB"
    }
    fn boot(&mut self) -> Result<Slot, String> {
        let mut env = MenderGrubenv::new(self.dir.clone());
        grub_script_boot(&mut env, &mut self.work, PARTS)
            .map(|b| b.slot)
            .map_err(|e| e.to_string())
    }
    fn control(&mut self) -> GrubControl<'_, GrubFiles> {
        GrubControl::new(MenderGrubenv::new(self.dir.clone()), &mut self.work, PARTS)
    }
}

// ----------------------------------------------------------------- server

/// The scripted server: one deployment of one artifact, the Mender device
/// API's answers, and a record of every status report.
pub struct Server {
    pub artifact: Vec<u8>,
    pub artifact_name: String,
    pub deployment_id: String,
    /// The deployment is still offered (no final status yet).
    pub active: bool,
    /// Every status body received, in order.
    pub statuses: Vec<String>,
    pub logs: Vec<String>,
    pub auths: usize,
    tokens: Vec<String>,
}

impl Server {
    pub fn new(artifact: Vec<u8>, artifact_name: &str) -> Server {
        Server {
            artifact,
            artifact_name: artifact_name.into(),
            deployment_id: "00000000-0000-4000-8000-000000000001".into(),
            active: true,
            statuses: Vec::new(),
            logs: Vec::new(),
            auths: 0,
            tokens: Vec::new(),
        }
    }

    pub fn handle(&mut self, req: &Request<'_>) -> (u16, Vec<u8>) {
        if req.path == api::AUTH_PATH {
            assert_eq!(req.method, Method::Post);
            assert!(req.signature.is_some(), "auth request without signature");
            self.auths += 1;
            let t = format!("token-{}", self.auths);
            self.tokens.push(t.clone());
            return (200, t.into_bytes());
        }
        let authed = req
            .bearer
            .is_some_and(|t| self.tokens.iter().any(|k| k == t));
        if !authed {
            return (401, b"{\"error\":\"unauthorized\"}".to_vec());
        }
        let status_path = format!("{}{}/status", api::DEPLOYMENT_PREFIX, self.deployment_id);
        let log_path = format!("{}{}/log", api::DEPLOYMENT_PREFIX, self.deployment_id);
        if req.path == api::INVENTORY_PATH {
            (200, Vec::new())
        } else if req.path == api::NEXT_V2_PATH {
            if !self.active {
                return (204, Vec::new());
            }
            let body = format!(
                "{{\"id\":\"{}\",\"artifact\":{{\"artifact_name\":\"{}\",\"source\":{{\"uri\":\"https://sim/artifact.mender\"}},\"device_types_compatible\":[\"sim-board\"]}}}}",
                self.deployment_id, self.artifact_name
            );
            (200, body.into_bytes())
        } else if req.path == status_path {
            let body = String::from_utf8_lossy(req.body).into_owned();
            if body.contains("\"success\"") || body.contains("\"failure\"") {
                self.active = false;
            }
            self.statuses.push(body);
            (204, Vec::new())
        } else if req.path == log_path {
            self.logs
                .push(String::from_utf8_lossy(req.body).into_owned());
            (204, Vec::new())
        } else {
            (404, b"{\"error\":\"not found\"}".to_vec())
        }
    }

    /// The final statuses reported (`success` / `failure`), in order.
    pub fn finals(&self) -> Vec<&'static str> {
        self.statuses
            .iter()
            .filter_map(|s| {
                if s.contains("\"success\"") {
                    Some("success")
                } else if s.contains("\"failure\"") {
                    Some("failure")
                } else {
                    None
                }
            })
            .collect()
    }
}

// -------------------------------------------------------------------- sim

/// What the new image does once booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// It boots and is healthy: the update commits.
    Healthy,
    /// It boots but fails its health check: the agent rolls back.
    FailsCheck,
    /// It never comes up: the bootloader falls back.
    FailsBoot,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The image the device runs at the end.
    pub running: String,
    /// The slot it runs from.
    pub slot: Slot,
    /// The agent's installed artifact name.
    pub installed: String,
    /// The final status(es) the server received.
    pub finals: Vec<&'static str>,
    /// Power-ons (boots) in the run.
    pub boots: usize,
}

/// One simulated device and its server.
pub struct Sim<L: Loader> {
    pub power: Rc<Power>,
    pub loader: L,
    pub disk: Disk,
    pub state: Flash,
    pub server: Server,
    pub clock: Millis,
    pub boots: usize,
    /// A state record was saved completely at least once.
    saved: bool,
    /// The state scripts the device has (root file system and artifact),
    /// each of which succeeds.
    pub scripts: Vec<&'static str>,
    /// The scripts run, in order, over all boots.
    pub ran: Vec<String>,
    /// Scripts of `scripts` that exit 1 (with a message on stderr).
    pub failing: Vec<&'static str>,
    key: SigningKey,
    trace: Vec<String>,
}

pub const OLD: &str = "release-1";
pub const NEW: &str = "release-2";
const STATE_COPY: usize = 4096;
/// The sim device's state scripts: one per hook the sweep checks.
pub const SCRIPTS: &[&str] = &[
    "Download_Enter_00",
    "ArtifactInstall_Enter_00",
    "ArtifactInstall_Error_00",
    "ArtifactReboot_Error_00",
    "ArtifactCommit_Enter_00",
    "ArtifactCommit_Leave_00",
    "ArtifactCommit_Error_00",
    "ArtifactRollback_Enter_00",
    "ArtifactFailure_Enter_00",
];
const CHUNK: usize = 1000;

impl<L: Loader> Sim<L> {
    /// A device running `release-1` from slot A, and a server offering
    /// `artifact` (`release-2`).
    pub fn new(
        make_loader: impl FnOnce(&Rc<Power>) -> L,
        artifact: Vec<u8>,
        cuts: Vec<Cut>,
    ) -> Self {
        let power = Rc::new(Power::default());
        let loader = make_loader(&power);
        let disk = loader.disk(&power);
        let state = Flash::new("state store", 2 * STATE_COPY, 0xff, &power);
        *power.cuts.borrow_mut() = cuts;
        Sim {
            power,
            loader,
            disk,
            state,
            server: Server::new(artifact, NEW),
            clock: 1_795_000_000_000,
            boots: 0,
            saved: false,
            scripts: SCRIPTS.to_vec(),
            ran: Vec::new(),
            failing: Vec::new(),
            key: SigningKey::p256_from_bytes(&[7u8; 32]).unwrap(),
            trace: Vec::new(),
        }
    }

    fn note(&mut self, s: String) {
        self.trace.push(s);
    }

    /// The run so far, one line per event (for failure messages).
    pub fn trace(&self) -> String {
        self.trace.join("\n")
    }

    /// Powers on until the update is over; then checks the invariants.
    pub fn run(&mut self) -> Result<Verdict, String> {
        for _ in 0..60 {
            self.power.off.set(false);
            self.boots += 1;
            match self.power_on()? {
                End::Finished(v) => return Ok(v),
                End::Reset(why) => self.note(format!("-- reset: {why}")),
            }
        }
        Err("the device never settled (60 boots)".into())
    }

    fn power_on(&mut self) -> Result<End, String> {
        let booted = self.loader.boot();
        for line in self.loader.log() {
            self.note(format!("  {}: {line}", self.loader.name()));
        }
        let slot = match booted {
            Ok(s) => s,
            Err(_) if self.power.is_off() => return Ok(End::Reset("power cut in the bootloader")),
            Err(e) => return Err(format!("the bootloader failed: {e}")),
        };
        let bytes = self.disk.slot(slot).bytes();
        let image = inspect(bytes.get(self.loader.image_offset()..).unwrap_or_default());
        self.note(format!("boot slot {slot}: {image:?}"));
        let named = if self.loader.names_image() {
            image.as_ref().map(|(name, _)| name.clone())
        } else {
            None
        };
        let Some((running, health)) = image else {
            // An incomplete image booted: this is a brick unless the
            // bootloader's fallback saves it at the next reset.
            return Ok(End::Reset("kernel found no valid image (watchdog)"));
        };
        if health == Health::FailsBoot {
            return Ok(End::Reset("the new image panics (watchdog)"));
        }
        let mut store = DualStore::new(self.state.clone(), [0, STATE_COPY as u64], STATE_COPY)
            .map_err(|e| e.to_string())?;
        let record = store.load().map_err(|e| format!("state store: {e}"))?;
        if self.saved && record.is_none() {
            return Err("the state record was lost".into());
        }
        let boot = self
            .loader
            .control()
            .state()
            .map_err(|e| format!("boot state: {e}"))?;
        let mut installed = Installed::default();
        installed.artifact_name.push_str(OLD).unwrap();
        installed
            .provides
            .push(Provide {
                key: "rootfs-image.version".try_into().unwrap(),
                value: OLD.try_into().unwrap(),
            })
            .unwrap();
        let pem = "-----BEGIN PUBLIC KEY-----\nsim\n-----END PUBLIC KEY-----\n";
        let cfg = Config {
            device_type: "sim-board",
            id_data: "{\"mac\":\"52:54:00:00:00:01\"}",
            public_key_pem: pem,
            tenant_token: "",
            payload_type: "rootfs-image",
            inventory: &[],
            update_poll: 5_000,
            inventory_poll: 60_000,
            retry: 1_000,
            max_retry: 30_000,
            max_attempts: 3,
            server: true,
            scripts: true,
            script_retry_interval: 1_000,
            script_retry_timeout: 10_000,
        };
        let key = self.key.clone();
        let mut agent = Agent::new(cfg, &key, record, installed);
        let mut next = Next::Boot(boot, named);
        for _ in 0..10_000 {
            let action = match next {
                Next::Boot(boot, ref image) => agent.handle(
                    Input::Boot {
                        boot,
                        image: image.as_deref(),
                    },
                    self.clock,
                ),
                Next::Response(status, ref body) => {
                    agent.handle(Input::Response { status, body }, self.clock)
                }
                Next::Timer => agent.handle(Input::Timer, self.clock),
                Next::Done => agent.handle(Input::Done, self.clock),
                Next::Failed(ref why) => agent.handle(Input::Failed(why), self.clock),
                Next::Downloaded(proof, installed) => agent.handle(
                    Input::Downloaded {
                        proof,
                        next: *installed,
                    },
                    self.clock,
                ),
                Next::DownloadFailed(ref why, retry) => {
                    agent.handle(Input::DownloadFailed { reason: why, retry }, self.clock)
                }
                Next::Script(ref name) => agent.handle(
                    Input::Script {
                        name: name.as_deref(),
                    },
                    self.clock,
                ),
            };
            let label = format!("{action:?}");
            let label = label
                .split(['{', '('])
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            next = match action {
                Action::Send(req) => {
                    let (status, body) = self.server.handle(&req);
                    self.note(format!(
                        "  {} {} -> {status}",
                        req.method.as_str(),
                        req.path
                    ));
                    Next::Response(status, body)
                }
                Action::Fetch { .. } => {
                    self.note("  fetch".into());
                    Next::Done
                }
                Action::FindScript { hook, index } => Next::Script(
                    self.scripts
                        .iter()
                        .filter(|n| hook.matches(n))
                        .nth(usize::from(index))
                        .map(|n| n.to_string()),
                ),
                Action::RunScript { name, .. } => {
                    self.note(format!("  script {name}"));
                    self.ran.push(name.to_string());
                    if self.failing.contains(&name) {
                        Next::Failed(format!("{name}: exit status 1"))
                    } else {
                        Next::Done
                    }
                }
                Action::Download { target, .. } => {
                    let mut inst = Install::new(Reader::new(), target);
                    let bytes = self.server.artifact.clone();
                    let mut res: Result<(), InstallError<String>> = Ok(());
                    for chunk in bytes.chunks(CHUNK) {
                        res = inst.feed(chunk, &mut self.disk);
                        if res.is_err() {
                            break;
                        }
                    }
                    if self.power.is_off() {
                        return Ok(End::Reset("power cut while writing the slot"));
                    }
                    self.note("  download".into());
                    match res.and_then(|()| inst.finish()) {
                        Ok((proof, installed)) => Next::Downloaded(proof, Box::new(installed)),
                        Err(e) => Next::DownloadFailed(e.to_string(), false),
                    }
                }
                Action::Persist(rec) => {
                    let r = store.save(rec);
                    if self.power.is_off() {
                        return Ok(End::Reset("power cut while saving the state"));
                    }
                    self.note(format!(
                        "  persist {:?}",
                        rec.update.as_ref().map(|u| u.state)
                    ));
                    match r {
                        Ok(()) => {
                            self.saved = true;
                            Next::Done
                        }
                        Err(e) => Next::Failed(e.to_string()),
                    }
                }
                Action::Arm { slot, proof } => {
                    let r = self
                        .loader
                        .control()
                        .arm_trial(slot, proof)
                        .map_err(|e| e.to_string());
                    match self.step_result(r, "arm") {
                        Some(n) => n,
                        None => return Ok(End::Reset("power cut while arming")),
                    }
                }
                Action::Confirm => {
                    let r = self.loader.control().confirm().map_err(|e| e.to_string());
                    match self.step_result(r, "confirm") {
                        Some(n) => n,
                        None => return Ok(End::Reset("power cut while confirming")),
                    }
                }
                Action::RollBack => {
                    let r = self.loader.control().roll_back().map_err(|e| e.to_string());
                    match self.step_result(r, "roll back") {
                        Some(n) => n,
                        None => return Ok(End::Reset("power cut while rolling back")),
                    }
                }
                Action::Reboot => return Ok(End::Reset("the agent rebooted")),
                Action::CheckHealth => {
                    self.note(format!("  health check of {running}"));
                    if health == Health::Good {
                        Next::Done
                    } else {
                        Next::Failed("health check failed".into())
                    }
                }
                Action::Wait { until } => {
                    if agent.is_idle() && !self.server.active {
                        let rec = agent.record();
                        return Ok(End::Finished(Verdict {
                            running: running.clone(),
                            slot,
                            installed: rec.installed.artifact_name.to_string(),
                            finals: self.server.finals(),
                            boots: self.boots,
                        }));
                    }
                    self.clock = self.clock.max(until);
                    Next::Timer
                }
                _ => return Err(format!("unexpected action {label}")),
            };
        }
        Err("the agent did not settle in 10000 steps".into())
    }

    /// The answer to a bootloader step, or `None` when the power failed.
    fn step_result(&mut self, r: Result<(), String>, what: &str) -> Option<Next> {
        if self.power.is_off() {
            return None;
        }
        self.note(format!("  {what}: {r:?}"));
        Some(match r {
            Ok(()) => Next::Done,
            Err(e) => Next::Failed(e),
        })
    }

    /// Checks what must hold at the end of any run, cut or not.
    pub fn check(&mut self, v: &Verdict, scenario: Scenario) -> Result<(), String> {
        if v.running != OLD && v.running != NEW {
            return Err(format!("runs an unknown image {:?}", v.running));
        }
        if v.installed != v.running {
            return Err(format!(
                "the agent believes {} is installed but {} runs",
                v.installed, v.running
            ));
        }
        let committed = v.running == NEW;
        if committed && scenario != Scenario::Healthy {
            return Err(format!("a {scenario:?} image was committed"));
        }
        let want = if committed { "success" } else { "failure" };
        if v.finals.is_empty() || v.finals.iter().any(|f| *f != want) {
            return Err(format!(
                "the server was told {:?} but the device {}",
                v.finals,
                if committed {
                    "committed the new image"
                } else {
                    "runs the old image"
                }
            ));
        }
        // The state scripts of the path taken ran (at least once: a cut
        // may run one again, as Mender may).
        let ran = |name: &str| self.ran.iter().any(|r| r == name);
        let mut needed = vec!["Download_Enter_00"];
        if committed {
            needed.extend([
                "ArtifactInstall_Enter_00",
                "ArtifactCommit_Enter_00",
                "ArtifactCommit_Leave_00",
            ]);
        } else if ran("ArtifactInstall_Enter_00") {
            // Past Download the artifact's scripts exist: its failure
            // scripts run too.
            needed.push("ArtifactFailure_Enter_00");
        }
        needed.retain(|n| self.scripts.contains(n));
        if let Some(missing) = needed.into_iter().find(|n| !ran(n)) {
            return Err(format!(
                "state script {missing} never ran (ran: {:?})",
                self.ran
            ));
        }
        if committed && ran("ArtifactFailure_Enter_00") {
            return Err(format!(
                "ArtifactFailure scripts ran but the update committed (ran: {:?})",
                self.ran
            ));
        }
        let boot = self
            .loader
            .control()
            .state()
            .map_err(|e| format!("boot state at the end: {e}"))?;
        if boot.trial != updraft_core::boot::Trial::None {
            return Err(format!("a trial is still pending at the end: {boot:?}"));
        }
        let mut store = DualStore::new(self.state.clone(), [0, STATE_COPY as u64], STATE_COPY)
            .map_err(|e| e.to_string())?;
        match store.load() {
            Ok(Some(rec))
                if rec.update.is_none() && rec.installed.artifact_name.as_str() == v.installed => {}
            other => return Err(format!("the stored record is not the final one: {other:?}")),
        }
        Ok(())
    }
}

enum Next {
    Boot(updraft_core::boot::BootState, Option<String>),
    Response(u16, Vec<u8>),
    Timer,
    Done,
    Failed(String),
    Downloaded(updraft_core::boot::Verified, Box<Installed>),
    DownloadFailed(String, bool),
    Script(Option<String>),
}

enum End {
    Finished(Verdict),
    Reset(&'static str),
}
