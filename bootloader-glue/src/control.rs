//! [`BootControl`] over Mender's bootloader variables: [`UbootControl`]
//! (U-Boot env, usually a redundant pair) and [`GrubControl`] (Mender's
//! double grubenv), plus [`uboot_script_boot`] and [`grub_script_boot`],
//! which apply to an env what one boot through `scripts/boot.cmd` or
//! `scripts/grub.cfg` does (for tests and simulators).
//!
//! # Variables
//!
//! | variable | meaning |
//! | --- | --- |
//! | `mender_boot_part` | partition number (decimal) of the slot to boot |
//! | `mender_boot_part_hex` | the same in hex (U-Boot `mmc 0:<hex>`) |
//! | `upgrade_available` | `1` while a trial is armed or running |
//! | `bootcount` | boots since arming; the bootloader increments it |
//! | `mender_check_saveenv_canary`, `mender_saveenv_canary` | U-Boot only: when the first is `1`, the second must be `1` (written by U-Boot at first boot), proving U-Boot and user space use the same env |
//!
//! # State mapping
//!
//! | `upgrade_available` | `bootcount` | [`Trial`] | [`BootState::active`] |
//! | --- | --- | --- | --- |
//! | 1 | 0 | `Armed(slot of mender_boot_part)` | the other slot (the one running until the reboot) |
//! | 1 | n ≥ 1 | `Running { boot_count: n }` | slot of `mender_boot_part` |
//! | 0 | any | `None` | slot of `mender_boot_part` |
//!
//! A missing variable, a value that is not a plain number, a partition
//! that is neither slot, `mender_boot_part_hex` disagreeing with
//! `mender_boot_part` (U-Boot), an `upgrade_available` other than 0/1, or
//! a GRUB `bootcount` other than 0/1 is a [`ControlError`], never a guess.
//!
//! # Writes
//!
//! Each operation is one batched write (one U-Boot copy, or one run of the
//! grubenv protocol), so a power cut leaves the old or the new state:
//!
//! * arm: `mender_boot_part=<new> mender_boot_part_hex=<hex>
//!   upgrade_available=1 bootcount=0`;
//! * confirm (running trial): `upgrade_available=0 bootcount=0`;
//! * roll back (armed or running): `mender_boot_part=<old>
//!   mender_boot_part_hex=<hex> upgrade_available=0 bootcount=0`.
//!
//! Confirm and roll back with no trial do nothing (a retry after a cut is
//! safe); confirm while only armed is refused (the new slot never booted).

use crate::change::Change;
use crate::mender_grub::{GrubenvDir, MenderGrubError, MenderGrubenv};
use crate::storage::EnvStorage;
use crate::uboot::{UbootEnv, UpdateError};
use core::fmt;
use updraft_core::boot::{BootControl, BootState, Slot, Trial, Verified};

/// The partition numbers of slots A and B (e.g. 2 and 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotPartitions {
    a: u32,
    b: u32,
}

/// [`SlotPartitions::new`] was given the same partition twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamePartitionError {
    /// The partition given for both slots.
    pub partition: u32,
}

impl fmt::Display for SamePartitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "slots A and B cannot both be partition {}",
            self.partition
        )
    }
}

impl core::error::Error for SamePartitionError {}

impl SlotPartitions {
    /// Slot A on partition `a`, slot B on partition `b`.
    pub const fn new(a: u32, b: u32) -> Result<Self, SamePartitionError> {
        if a == b {
            return Err(SamePartitionError { partition: a });
        }
        Ok(SlotPartitions { a, b })
    }

    /// The partition of `slot`.
    pub const fn partition(&self, slot: Slot) -> u32 {
        match slot {
            Slot::A => self.a,
            Slot::B => self.b,
        }
    }

    /// The slot on partition `part`, if any.
    pub const fn slot(&self, part: u32) -> Option<Slot> {
        if part == self.a {
            Some(Slot::A)
        } else if part == self.b {
            Some(Slot::B)
        } else {
            None
        }
    }
}

/// Why a [`BootControl`] operation failed. `E` is the environment's own
/// error (reading or writing the U-Boot env or the grubenv).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError<E> {
    /// Reading or writing the environment failed.
    Env(E),
    /// A Mender variable is not set.
    Missing {
        /// The variable.
        name: &'static str,
    },
    /// A Mender variable has a value that is not valid for it (not a
    /// plain number, or out of its range).
    Invalid {
        /// The variable.
        name: &'static str,
    },
    /// `mender_boot_part` names a partition that is neither slot.
    UnknownPartition {
        /// The partition found.
        partition: u32,
    },
    /// `mender_boot_part_hex` does not name the same partition as
    /// `mender_boot_part`.
    HexMismatch,
    /// `mender_check_saveenv_canary=1` but `mender_saveenv_canary` is not
    /// `1`: U-Boot never saved this env, so it likely reads another one
    /// (`fw_env.config` mismatch, or `mender_setup` not run). The Mender
    /// client refuses to go on in this case; so do we.
    CanaryNotSet,
    /// Arming the slot that is running now.
    SlotIsActive {
        /// The slot asked for.
        slot: Slot,
    },
    /// Arming while a trial is running (confirm or roll back first), or
    /// while another slot is armed.
    TrialInProgress,
    /// Confirming a trial that is armed but has not booted yet.
    NotBooted,
}

impl<E: fmt::Display> fmt::Display for ControlError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Env(e) => write!(f, "{e}"),
            ControlError::Missing { name } => write!(f, "bootloader variable {name} is not set"),
            ControlError::Invalid { name } => {
                write!(f, "bootloader variable {name} has an invalid value")
            }
            ControlError::UnknownPartition { partition } => write!(
                f,
                "mender_boot_part={partition} is neither the A nor the B partition"
            ),
            ControlError::HexMismatch => {
                f.write_str("mender_boot_part_hex does not match mender_boot_part")
            }
            ControlError::CanaryNotSet => f.write_str(
                "mender_saveenv_canary is not 1 although mender_check_saveenv_canary=1: \
                 U-Boot and user space do not use the same environment",
            ),
            ControlError::SlotIsActive { slot } => {
                write!(
                    f,
                    "slot {slot} is running; only the inactive slot can be armed"
                )
            }
            ControlError::TrialInProgress => f.write_str("a trial boot is already in progress"),
            ControlError::NotBooted => {
                f.write_str("the armed slot has not booted yet; it cannot be confirmed")
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for ControlError<E> {}

/// The Mender variables, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MenderVars {
    /// The slot of `mender_boot_part`.
    boot: Slot,
    upgrade_available: bool,
    bootcount: u32,
}

impl MenderVars {
    fn state(&self) -> BootState {
        match (self.upgrade_available, self.bootcount) {
            (true, 0) => BootState {
                active: self.boot.other(),
                trial: Trial::Armed(self.boot),
            },
            (true, n) => BootState {
                active: self.boot,
                trial: Trial::Running { boot_count: n },
            },
            (false, _) => BootState {
                active: self.boot,
                trial: Trial::None,
            },
        }
    }
}

/// What a write should do, decided from the current variables.
enum Plan {
    Nothing,
    /// Point at this slot with `upgrade_available` set or not.
    Point {
        slot: Slot,
        upgrade: bool,
    },
    /// `upgrade_available=0 bootcount=0`.
    Commit,
}

fn plan_arm<E>(vars: &MenderVars, slot: Slot) -> Result<Plan, ControlError<E>> {
    let state = vars.state();
    match state.trial {
        Trial::Running { .. } => Err(ControlError::TrialInProgress),
        Trial::Armed(armed) if armed != slot => Err(ControlError::TrialInProgress),
        _ if state.active == slot => Err(ControlError::SlotIsActive { slot }),
        _ => Ok(Plan::Point {
            slot,
            upgrade: true,
        }),
    }
}

fn plan_confirm<E>(vars: &MenderVars) -> Result<Plan, ControlError<E>> {
    match vars.state().trial {
        Trial::None => Ok(Plan::Nothing),
        Trial::Armed(_) => Err(ControlError::NotBooted),
        Trial::Running { .. } => Ok(Plan::Commit),
    }
}

fn plan_roll_back(vars: &MenderVars) -> Plan {
    match vars.state().trial {
        Trial::None => Plan::Nothing,
        Trial::Armed(slot) => Plan::Point {
            slot: slot.other(),
            upgrade: false,
        },
        Trial::Running { .. } => Plan::Point {
            slot: vars.boot.other(),
            upgrade: false,
        },
    }
}

/// A `u32` formatted in decimal or lowercase hex, without a heap.
struct Num {
    buf: [u8; 10],
    start: usize,
}

impl Num {
    fn new(mut n: u32, radix: u32) -> Num {
        let mut buf = [b'0'; 10];
        let mut start = buf.len();
        loop {
            start -= 1;
            let digit = (n % radix) as u8;
            buf[start] = if digit < 10 {
                b'0' + digit
            } else {
                b'a' + digit - 10
            };
            n /= radix;
            if n == 0 {
                break;
            }
        }
        Num { buf, start }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        core::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

/// Runs `write` with the changes of `plan` (nothing for `Plan::Nothing`).
fn with_changes<T, E>(
    plan: Plan,
    parts: SlotPartitions,
    write: impl FnOnce(&[Change<'_>]) -> Result<T, E>,
) -> Result<(), E> {
    match plan {
        Plan::Nothing => Ok(()),
        Plan::Commit => write(&[
            Change::set("upgrade_available", "0"),
            Change::set("bootcount", "0"),
        ])
        .map(|_| ()),
        Plan::Point { slot, upgrade } => {
            let part = parts.partition(slot);
            let (dec, hex) = (Num::new(part, 10), Num::new(part, 16));
            write(&[
                Change::set("mender_boot_part", dec.as_str()),
                Change::set("mender_boot_part_hex", hex.as_str()),
                Change::set("upgrade_available", if upgrade { "1" } else { "0" }),
                Change::set("bootcount", "0"),
            ])
            .map(|_| ())
        }
    }
}

/// Parses a plain decimal `u32` (digits only, no sign, no leading zero).
fn parse_dec(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 10 || (v.len() > 1 && v[0] == b'0') {
        return None;
    }
    let mut n: u32 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u32::from(c - b'0'))?;
    }
    Some(n)
}

/// Parses hex digits (either case, no prefix) as U-Boot reads a partition.
fn parse_hex(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 8 {
        return None;
    }
    let mut n: u32 = 0;
    for &c in v {
        let d = char::from(c).to_digit(16)?;
        n = (n << 4) | d;
    }
    Some(n)
}

fn flag<E>(v: Option<&[u8]>, name: &'static str) -> Result<bool, ControlError<E>> {
    match v {
        None => Err(ControlError::Missing { name }),
        Some(b"0") => Ok(false),
        Some(b"1") => Ok(true),
        Some(_) => Err(ControlError::Invalid { name }),
    }
}

/// Which bootloader's rules apply when decoding.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Uboot,
    Grub,
}

/// Validates the Mender variables; `get` returns a variable's raw value.
fn decode<'v, E>(
    parts: SlotPartitions,
    flavor: Flavor,
    get: impl Fn(&str) -> Option<&'v [u8]>,
) -> Result<MenderVars, ControlError<E>> {
    if flavor == Flavor::Uboot
        && get("mender_check_saveenv_canary") == Some(b"1")
        && get("mender_saveenv_canary") != Some(b"1")
    {
        return Err(ControlError::CanaryNotSet);
    }
    let name = "mender_boot_part";
    let part = get(name).ok_or(ControlError::Missing { name })?;
    let part = parse_dec(part).ok_or(ControlError::Invalid { name })?;
    let boot = parts
        .slot(part)
        .ok_or(ControlError::UnknownPartition { partition: part })?;
    if flavor == Flavor::Uboot {
        // GRUB never reads it, and GRUB's own fallback leaves it stale.
        let name = "mender_boot_part_hex";
        let hex = get(name).ok_or(ControlError::Missing { name })?;
        let hex = parse_hex(hex).ok_or(ControlError::Invalid { name })?;
        if hex != part {
            return Err(ControlError::HexMismatch);
        }
    }
    let upgrade_available = flag(get("upgrade_available"), "upgrade_available")?;
    let name = "bootcount";
    let bootcount = match flavor {
        Flavor::Uboot => parse_dec(get(name).ok_or(ControlError::Missing { name })?),
        Flavor::Grub => match get(name) {
            None => return Err(ControlError::Missing { name }),
            Some(b"0") => Some(0),
            Some(b"1") => Some(1),
            Some(_) => None,
        },
    }
    .ok_or(ControlError::Invalid { name })?;
    Ok(MenderVars {
        boot,
        upgrade_available,
        bootcount,
    })
}

/// [`BootControl`] over a U-Boot env with Mender's variables.
///
/// `buf` must be exactly the env copy size (`UbootEnv::size`); it is the
/// only memory used. Use a redundant env: a single copy is not power-safe.
#[derive(Debug)]
pub struct UbootControl<'b, S> {
    env: UbootEnv<S>,
    buf: &'b mut [u8],
    parts: SlotPartitions,
}

/// The error of [`UbootControl`].
pub type UbootControlError<E> = ControlError<UpdateError<E>>;

impl<'b, S: EnvStorage> UbootControl<'b, S> {
    /// Drives `env` with `buf` (the copy size) as work memory.
    pub fn new(env: UbootEnv<S>, buf: &'b mut [u8], parts: SlotPartitions) -> Self {
        UbootControl { env, buf, parts }
    }

    /// The env.
    pub fn env(&self) -> &UbootEnv<S> {
        &self.env
    }

    /// The env, mutably.
    pub fn env_mut(&mut self) -> &mut UbootEnv<S> {
        &mut self.env
    }

    /// Gives back the env.
    pub fn into_inner(self) -> UbootEnv<S> {
        self.env
    }

    /// The partitions of the slots.
    pub fn partitions(&self) -> SlotPartitions {
        self.parts
    }

    fn vars(&mut self) -> Result<MenderVars, UbootControlError<S::Error>> {
        let loaded = self
            .env
            .load(self.buf)
            .map_err(|e| ControlError::Env(UpdateError::Load(e)))?;
        decode(self.parts, Flavor::Uboot, |n| loaded.env.get(n))
    }

    fn apply(&mut self, plan: Plan) -> Result<(), UbootControlError<S::Error>> {
        let (env, buf) = (&mut self.env, &mut *self.buf);
        with_changes(plan, self.parts, |changes| env.update(buf, changes))
            .map_err(ControlError::Env)
    }
}

impl<S: EnvStorage> BootControl for UbootControl<'_, S> {
    type Error = UbootControlError<S::Error>;

    fn state(&mut self) -> Result<BootState, Self::Error> {
        Ok(self.vars()?.state())
    }

    fn arm_trial(&mut self, slot: Slot, _proof: &Verified) -> Result<(), Self::Error> {
        let plan = plan_arm(&self.vars()?, slot)?;
        self.apply(plan)
    }

    fn confirm(&mut self) -> Result<(), Self::Error> {
        let plan = plan_confirm(&self.vars()?)?;
        self.apply(plan)
    }

    fn roll_back(&mut self) -> Result<(), Self::Error> {
        let plan = plan_roll_back(&self.vars()?);
        self.apply(plan)
    }
}

/// [`BootControl`] over Mender's double grubenv.
///
/// `work` is the grubenv work buffer (two halves, each at least one env or
/// lock file: [`WORK_SIZE`](crate::mender_grub::WORK_SIZE) for standard
/// blocks). Every read repairs an interrupted write first.
#[derive(Debug)]
pub struct GrubControl<'b, D> {
    env: MenderGrubenv<D>,
    work: &'b mut [u8],
    parts: SlotPartitions,
}

/// The error of [`GrubControl`].
pub type GrubControlError<E> = ControlError<MenderGrubError<E>>;

impl<'b, D: GrubenvDir> GrubControl<'b, D> {
    /// Drives `env` with `work` as work memory.
    pub fn new(env: MenderGrubenv<D>, work: &'b mut [u8], parts: SlotPartitions) -> Self {
        GrubControl { env, work, parts }
    }

    /// The grubenv.
    pub fn env(&self) -> &MenderGrubenv<D> {
        &self.env
    }

    /// The grubenv, mutably.
    pub fn env_mut(&mut self) -> &mut MenderGrubenv<D> {
        &mut self.env
    }

    /// Gives back the grubenv.
    pub fn into_inner(self) -> MenderGrubenv<D> {
        self.env
    }

    /// The partitions of the slots.
    pub fn partitions(&self) -> SlotPartitions {
        self.parts
    }

    fn vars(&mut self) -> Result<MenderVars, GrubControlError<D::Error>> {
        let loaded = self.env.load(self.work).map_err(ControlError::Env)?;
        decode(self.parts, Flavor::Grub, |n| {
            loaded.env.get(n).map(|v| v.raw())
        })
    }

    fn apply(&mut self, plan: Plan) -> Result<(), GrubControlError<D::Error>> {
        let (env, work) = (&mut self.env, &mut *self.work);
        with_changes(plan, self.parts, |changes| env.update(work, changes))
            .map_err(ControlError::Env)
    }
}

impl<D: GrubenvDir> BootControl for GrubControl<'_, D> {
    type Error = GrubControlError<D::Error>;

    fn state(&mut self) -> Result<BootState, Self::Error> {
        Ok(self.vars()?.state())
    }

    fn arm_trial(&mut self, slot: Slot, _proof: &Verified) -> Result<(), Self::Error> {
        let plan = plan_arm(&self.vars()?, slot)?;
        self.apply(plan)
    }

    fn confirm(&mut self) -> Result<(), Self::Error> {
        let plan = plan_confirm(&self.vars()?)?;
        self.apply(plan)
    }

    fn roll_back(&mut self) -> Result<(), Self::Error> {
        let plan = plan_roll_back(&self.vars()?);
        self.apply(plan)
    }
}

/// What one boot through a boot script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptBoot {
    /// The slot the script boots.
    pub slot: Slot,
    /// Its partition number.
    pub partition: u32,
    /// This boot is a trial boot of `slot` (`upgrade_available=1`).
    pub trial: bool,
    /// The script fell back to the other slot on this boot (the trial
    /// exceeded `bootlimit`, or GRUB found an unconfirmed trial).
    pub fell_back: bool,
}

/// Applies to `env` what one boot through `scripts/boot.cmd` does, with
/// the same saves in the same order (each `saveenv` is one
/// [`UbootEnv::update`]), and says which slot it boots:
///
/// 1. `mender_saveenv_canary` not `1` → set it, save;
/// 2. `upgrade_available=1` → `bootcount + 1`, save (U-Boot's own
///    `bootcount_inc` with `CONFIG_BOOTCOUNT_ENV` does the same before the
///    script runs, so the env ends up the same either way);
/// 3. still `upgrade_available=1`, `bootlimit` ≠ 0 and `bootcount` >
///    `bootlimit` (`bootlimit` unset counts as 1) → point at the other
///    slot, `upgrade_available=0`, save (`bootcount` is kept, as
///    meta-mender's `mender_altbootcmd` keeps it);
/// 4. boot `mender_boot_part`.
///
/// Invalid variables are an error here, where the script would boot
/// something anyway.
pub fn uboot_script_boot<S: EnvStorage>(
    env: &mut UbootEnv<S>,
    buf: &mut [u8],
    parts: SlotPartitions,
) -> Result<ScriptBoot, UbootControlError<S::Error>> {
    let load_err = |e| ControlError::Env(UpdateError::Load(e));
    let needs_canary = env
        .load(buf)
        .map_err(load_err)?
        .env
        .get("mender_saveenv_canary")
        != Some(b"1".as_slice());
    if needs_canary {
        env.update(buf, &[Change::set("mender_saveenv_canary", "1")])
            .map_err(ControlError::Env)?;
    }
    let (vars, bootlimit) = {
        let loaded = env.load(buf).map_err(load_err)?;
        let vars = decode(parts, Flavor::Uboot, |n| loaded.env.get(n))?;
        let name = "bootlimit";
        let bootlimit = match loaded.env.get(name) {
            None => 1,
            Some(v) => parse_dec(v).ok_or(ControlError::Invalid { name })?,
        };
        (vars, bootlimit)
    };
    let mut boot = ScriptBoot {
        slot: vars.boot,
        partition: parts.partition(vars.boot),
        trial: vars.upgrade_available,
        fell_back: false,
    };
    if !vars.upgrade_available {
        return Ok(boot);
    }
    let count = vars
        .bootcount
        .checked_add(1)
        .ok_or(ControlError::Invalid { name: "bootcount" })?;
    let text = Num::new(count, 10);
    env.update(buf, &[Change::set("bootcount", text.as_str())])
        .map_err(ControlError::Env)?;
    if bootlimit != 0 && count > bootlimit {
        let slot = vars.boot.other();
        let part = parts.partition(slot);
        let (dec, hex) = (Num::new(part, 10), Num::new(part, 16));
        env.update(
            buf,
            &[
                Change::set("mender_boot_part", dec.as_str()),
                Change::set("mender_boot_part_hex", hex.as_str()),
                Change::set("upgrade_available", "0"),
            ],
        )
        .map_err(ControlError::Env)?;
        boot = ScriptBoot {
            slot,
            partition: part,
            trial: false,
            fell_back: true,
        };
    }
    Ok(boot)
}

/// Applies to the grubenv what one boot through `scripts/grub.cfg` does,
/// and says which slot it boots: repair (as `updraft_check_and_restore_env`
/// does, see [`MenderGrubenv::load`]); then with `upgrade_available=1`:
/// `bootcount=0` → `bootcount=1`, boot the trial slot; `bootcount=1` → the
/// trial was never confirmed: point at the other slot,
/// `upgrade_available=0`, `bootcount=0`; each change saved with the grubenv
/// protocol (one [`MenderGrubenv::update`]).
///
/// Invalid variables are an error here, where the script would boot slot
/// A (or B when `mender_boot_part` names it) after a warning.
pub fn grub_script_boot<D: GrubenvDir>(
    env: &mut MenderGrubenv<D>,
    work: &mut [u8],
    parts: SlotPartitions,
) -> Result<ScriptBoot, GrubControlError<D::Error>> {
    let vars = {
        let loaded = env.load(work).map_err(ControlError::Env)?;
        decode(parts, Flavor::Grub, |n| loaded.env.get(n).map(|v| v.raw()))?
    };
    let mut boot = ScriptBoot {
        slot: vars.boot,
        partition: parts.partition(vars.boot),
        trial: vars.upgrade_available,
        fell_back: false,
    };
    if !vars.upgrade_available {
        return Ok(boot);
    }
    if vars.bootcount == 0 {
        env.update(work, &[Change::set("bootcount", "1")])
            .map_err(ControlError::Env)?;
        return Ok(boot);
    }
    let slot = vars.boot.other();
    let part = parts.partition(slot);
    let dec = Num::new(part, 10);
    env.update(
        work,
        &[
            Change::set("mender_boot_part", dec.as_str()),
            Change::set("upgrade_available", "0"),
            Change::set("bootcount", "0"),
        ],
    )
    .map_err(ControlError::Env)?;
    boot = ScriptBoot {
        slot,
        partition: part,
        trial: false,
        fell_back: true,
    };
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTS: SlotPartitions = match SlotPartitions::new(2, 3) {
        Ok(p) => p,
        Err(_) => panic!(),
    };

    fn vars(pairs: &[(&str, &str)]) -> Result<MenderVars, ControlError<()>> {
        decode(PARTS, Flavor::Uboot, |n| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_bytes())
        })
    }

    const BASE: [(&str, &str); 4] = [
        ("mender_boot_part", "2"),
        ("mender_boot_part_hex", "2"),
        ("upgrade_available", "0"),
        ("bootcount", "0"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Result<MenderVars, ControlError<()>> {
        let mut all: std::vec::Vec<(&str, &str)> = BASE.to_vec();
        all.extend_from_slice(extra);
        vars(&all)
    }

    #[test]
    fn numbers() {
        assert_eq!(Num::new(0, 10).as_str(), "0");
        assert_eq!(Num::new(4294967295, 10).as_str(), "4294967295");
        assert_eq!(Num::new(10, 16).as_str(), "a");
        assert_eq!(Num::new(0xffff_ffff, 16).as_str(), "ffffffff");
        assert_eq!(parse_dec(b"12"), Some(12));
        assert_eq!(parse_dec(b"0"), Some(0));
        for bad in [&b""[..], b"02", b"+1", b" 1", b"1 ", b"4294967296", b"x"] {
            assert_eq!(parse_dec(bad), None, "{bad:?}");
        }
        assert_eq!(parse_hex(b"A"), Some(10));
        assert_eq!(parse_hex(b"0x3"), None);
    }

    #[test]
    fn mapping() {
        let s = with(&[]).unwrap().state();
        assert_eq!((s.active, s.trial), (Slot::A, Trial::None));
        let armed = [
            ("mender_boot_part", "3"),
            ("mender_boot_part_hex", "3"),
            ("upgrade_available", "1"),
        ];
        let s = with(&armed).unwrap().state();
        assert_eq!((s.active, s.trial), (Slot::A, Trial::Armed(Slot::B)));
        let mut running = armed.to_vec();
        running.push(("bootcount", "2"));
        let s = with(&running).unwrap().state();
        assert_eq!(
            (s.active, s.trial),
            (Slot::B, Trial::Running { boot_count: 2 })
        );
        // After U-Boot's fallback: upgrade_available=0, bootcount kept.
        let s = with(&[("bootcount", "2")]).unwrap().state();
        assert_eq!((s.active, s.trial), (Slot::A, Trial::None));
    }

    #[test]
    fn invalid_values_are_errors() {
        use ControlError as C;
        assert_eq!(
            with(&[("mender_boot_part", "4")]),
            Err(C::UnknownPartition { partition: 4 })
        );
        assert_eq!(with(&[("mender_boot_part", "3")]), Err(C::HexMismatch));
        assert_eq!(
            with(&[("mender_boot_part", "x")]),
            Err(C::Invalid {
                name: "mender_boot_part"
            })
        );
        assert_eq!(
            with(&[("upgrade_available", "2")]),
            Err(C::Invalid {
                name: "upgrade_available"
            })
        );
        assert_eq!(
            with(&[("bootcount", "")]),
            Err(C::Invalid { name: "bootcount" })
        );
        assert_eq!(
            with(&[("mender_check_saveenv_canary", "1")]),
            Err(C::CanaryNotSet)
        );
        assert!(with(&[
            ("mender_check_saveenv_canary", "1"),
            ("mender_saveenv_canary", "1")
        ])
        .is_ok());
        assert_eq!(
            vars(&BASE[1..]),
            Err(C::Missing {
                name: "mender_boot_part"
            })
        );
        // GRUB: bootcount only 0/1, mender_boot_part_hex ignored.
        let grub = |pairs: &[(&str, &str)]| -> Result<MenderVars, ControlError<()>> {
            decode(PARTS, Flavor::Grub, |n| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.as_bytes())
            })
        };
        assert_eq!(
            grub(&[
                ("mender_boot_part", "3"),
                ("upgrade_available", "1"),
                ("bootcount", "2")
            ]),
            Err(C::Invalid { name: "bootcount" })
        );
        assert!(grub(&[
            ("mender_boot_part", "3"),
            ("mender_boot_part_hex", "2"),
            ("upgrade_available", "0"),
            ("bootcount", "0")
        ])
        .is_ok());
    }

    #[test]
    fn plans() {
        let idle = with(&[]).unwrap();
        assert!(matches!(
            plan_arm::<()>(&idle, Slot::B),
            Ok(Plan::Point {
                slot: Slot::B,
                upgrade: true
            })
        ));
        assert_eq!(
            plan_arm::<()>(&idle, Slot::A).err(),
            Some(ControlError::SlotIsActive { slot: Slot::A })
        );
        assert!(matches!(plan_confirm::<()>(&idle), Ok(Plan::Nothing)));
        assert!(matches!(plan_roll_back(&idle), Plan::Nothing));
        let armed = with(&[
            ("mender_boot_part", "3"),
            ("mender_boot_part_hex", "3"),
            ("upgrade_available", "1"),
        ])
        .unwrap();
        assert!(plan_arm::<()>(&armed, Slot::B).is_ok());
        assert_eq!(
            plan_arm::<()>(&armed, Slot::A).err(),
            Some(ControlError::TrialInProgress)
        );
        assert_eq!(
            plan_confirm::<()>(&armed).err(),
            Some(ControlError::NotBooted)
        );
        assert!(matches!(
            plan_roll_back(&armed),
            Plan::Point {
                slot: Slot::A,
                upgrade: false
            }
        ));
        assert_eq!(
            SlotPartitions::new(2, 2),
            Err(SamePartitionError { partition: 2 })
        );
    }
}
