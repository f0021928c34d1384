//! An MCUboot device: the primary (slot A) and secondary (slot B) slots on
//! NOR flash (writes clear bits, erases set them; 16 KiB slots of four
//! 4 KiB sectors), MCUboot's scratch sector and its swap status, all on
//! the power rail. The bootloader is built for swap-using-scratch with
//! BOOT_MAX_ALIGN 8 and an 8-byte flash write size, and checks ECDSA P-256
//! signatures with a key made by `imgtool keygen` when the test runs.
//!
//! What is real: every image is signed by imgtool 2.5 (the factory image
//! `release-1` with `--pad --confirm`, the update as a plain signed image),
//! its body being the sim's self-checking image ([`make_image`]) after a
//! 0x200-byte image header; the agent arms, confirms and rolls back through
//! `updraft-boot`'s [`McubootControl`] over the sim flash (its own trailer
//! writes, its hash check before arming); the simulated bootloader decides
//! with `updraft-boot`'s decision table ([`trailer::swap_type`], MCUboot's
//! `boot_swap_type_multi`) and validates images with its verifier.
//!
//! What the simulated MCUboot does at each reset ([`Mcuboot::boot`]):
//!
//! 1. A swap in progress (the status area holds a complete header) is
//!    resumed at the first step not recorded as done.
//! 2. Otherwise, when the trailers ask for TEST, PERM or REVERT, the
//!    secondary's image is validated (hash and signature; an invalid one is
//!    erased and the primary boots as it is, as `boot_validate_slot`
//!    does); a status header (swap type, sector count) is written; then for
//!    each sector the larger image spans, swap-using-scratch's three steps
//!    (`boot_swap_sectors`), each an erase and a one-sector write, each
//!    recorded in the status area once done: secondary → scratch, primary
//!    → secondary, scratch → primary. The source of the step a cut
//!    interrupts is intact, so resuming redoes it. The swap is never taken
//!    as done before its last step and the trailers are recorded.
//! 3. The trailers: the primary's last sector is erased and written as
//!    MCUboot leaves it (magic, swap_info, image_ok for PERM and REVERT,
//!    copy_done), the secondary's last sector erased (its magic unset);
//!    then the status area is erased, which ends the swap. Redoing this
//!    after a cut gives the same result.
//! 4. The primary's image is validated (MCUBOOT_VALIDATE_PRIMARY_SLOT). An
//!    invalid one is a brick: [`Mcuboot::boot`] fails, and so does the run.
//!
//! A torn erase leaves a prefix of its range erased (the rail's model of
//! every erase): the status header counts only when both its bytes are
//! whole, and each swap erases the status before writing its header. As in
//! MCUboot, a TEST swap spends the trial: once its trailers are written, a
//! reset before the new image confirms reverts, even if the image never
//! ran. `tests/mcuboot_swap.rs` cuts every write of a swap and of a revert
//! (and again during the resumed swap) and checks the slots end exactly as
//! after an uninterrupted swap (or, for a spent trial, swap and revert).
//!
//! Simplifications, and why they are sound for what the sweep checks:
//! MCUboot keeps the swap status in the primary trailer (and in the
//! scratch trailer while the trailer sector itself moves); here it has an
//! area of its own. And the images must end before their slot's last
//! sector ([`signed`] checks it), so that sector holds only the trailer and
//! is rewritten rather than swapped. Both concern how MCUboot records its
//! own progress, which MCUboot's simulator sweeps cut by cut; this sim
//! sweeps the agent's side: whatever MCUboot finds after a cut (trailers
//! written by `McubootControl`, a secondary slot written by the agent)
//! must lead to a swap, a revert or nothing, never a lost image, and the
//! agent must report what runs. A signature check is a pure function of
//! the image bytes, so its answer is memoised per image (P-256 in a debug
//! build is slow, and the sweep boots thousands of times).
//!
//! The artifact's payload type stays `rootfs-image`: DESIGN.md fixes none
//! for MCUs, and the agent's `Config::payload_type` is the only thing that
//! would change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use updraft_boot::mcuboot::trailer::{self, read_state};
use updraft_boot::mcuboot::{
    verify, Area, ArmCheck, McubootControl, Mode, PublicKey, SwapType, TrailerLayout,
};
use updraft_boot::storage::{EnvStorage, Storage};
use updraft_core::boot::Slot;

use crate::{make_image, Disk, Flash, Health, Loader, Power, SimError, OLD, SLOT_SIZE};

/// Erase sector size of both slots.
pub const SECTOR: u64 = 4096;
/// imgtool's `--header-size`: the kernel image starts here in a slot.
pub const HEADER_SIZE: usize = 0x200;
const SLOT: u64 = SLOT_SIZE as u64;
/// The primary slot, at the start of [`McuFlash`].
pub const PRIMARY: Area = Area {
    offset: 0,
    size: SLOT,
    sector_size: SECTOR,
};
/// The secondary slot, right after it.
pub const SECONDARY: Area = Area {
    offset: SLOT,
    size: SLOT,
    sector_size: SECTOR,
};
/// Swap status: a 2-byte header (swap type, sectors), then one byte per
/// step.
const STATUS_SIZE: usize = 64;
const DONE: u8 = 0x01;

/// The bootloader's trailer layout: swap-using-scratch, BOOT_MAX_ALIGN 8,
/// 8-byte writes (imgtool `--align 8`), erased flash reads 0xff.
pub fn layout() -> TrailerLayout {
    TrailerLayout::new(Mode::SwapScratch, 8, 8, 0xff).expect("a valid layout")
}

// ---------------------------------------------------------------- imgtool

const IMGTOOL_VERSION: &str = "2.5.0";
const VENV: &str = "/var/tmp/updraft-imgtool-venv";

fn version(exe: &Path) -> Option<String> {
    let out = Command::new(exe).arg("version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// imgtool 2.5.0: `$IMGTOOL`, or the venv `scripts/test.sh` makes (made
/// here when it is missing).
fn imgtool() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let given = std::env::var_os("IMGTOOL").map(PathBuf::from);
        let exe = given
            .clone()
            .unwrap_or_else(|| Path::new(VENV).join("bin/imgtool"));
        if given.is_none() && version(&exe).as_deref() != Some(IMGTOOL_VERSION) {
            let _ = Command::new("python3").args(["-m", "venv", VENV]).status();
            let _ = Command::new(format!("{VENV}/bin/pip"))
                .args(["install", "-q", &format!("imgtool=={IMGTOOL_VERSION}")])
                .status();
        }
        let found = version(&exe);
        assert_eq!(
            found.as_deref(),
            Some(IMGTOOL_VERSION),
            "the MCUboot sim needs imgtool {IMGTOOL_VERSION} at {} (run scripts/test.sh, or \
             `python3 -m venv {VENV} && {VENV}/bin/pip install imgtool=={IMGTOOL_VERSION}`, or set \
             IMGTOOL)",
            exe.display()
        );
        exe
    })
}

fn imgtool_ok(args: &[&str]) {
    let out = Command::new(imgtool())
        .args(args)
        .output()
        .expect("imgtool runs");
    assert!(
        out.status.success(),
        "imgtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "updraft-e2e-mcuboot-{tag}-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Key {
    pem: Vec<u8>,
    public: PublicKey,
}

/// The signing key, made once per test process by `imgtool keygen -t
/// ecdsa-p256`; its public half as the bootloader embeds it.
fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = TempDir::new("key");
        let (pem, der) = (dir.path("key.pem"), dir.path("key.der"));
        imgtool_ok(&["keygen", "-t", "ecdsa-p256", "-k", &pem]);
        imgtool_ok(&["getpub", "-k", &pem, "-e", "raw", "-o", &der]);
        let public = PublicKey::from_der(&std::fs::read(&der).unwrap())
            .expect("imgtool's P-256 public key loads");
        Key {
            pem: std::fs::read(&pem).unwrap(),
            public,
        }
    })
}

/// `image` signed by imgtool for this device (0x200-byte header, 8-byte
/// writes, 16 KiB slots): as the factory flashes it (`--pad --confirm`:
/// slot-sized, with a confirmed trailer; version 1.0.0) or as an update
/// (version 2.0.0). Made once per process for each image.
pub fn signed(image: &[u8], factory: bool) -> Vec<u8> {
    type Cache = Mutex<Vec<((Vec<u8>, bool), Vec<u8>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    if let Some((_, s)) = cache.iter().find(|((i, f), _)| *f == factory && i == image) {
        return s.clone();
    }
    let key = key();
    let dir = TempDir::new("sign");
    let (pem, app, out) = (dir.path("key.pem"), dir.path("app.bin"), dir.path("out"));
    std::fs::write(&pem, &key.pem).unwrap();
    std::fs::write(&app, image).unwrap();
    let slot = format!("{SLOT:#x}");
    let header = format!("{HEADER_SIZE:#x}");
    let mut args = vec!["sign", "-k", &pem, "--header-size", &header, "--pad-header"];
    args.extend(["--align", "8", "--slot-size", &slot]);
    if factory {
        args.extend(["--version", "1.0.0", "--pad", "--confirm"]);
    } else {
        args.extend(["--version", "2.0.0"]);
    }
    args.extend([app.as_str(), out.as_str()]);
    imgtool_ok(&args);
    let bytes = std::fs::read(&out).unwrap();
    let v = verify(&bytes, Some(&key.public)).expect("imgtool's image verifies");
    assert!(
        v.total_len <= SLOT - SECTOR,
        "the sim's MCUboot model needs images ({} bytes) to end before the slot's last sector",
        v.total_len
    );
    cache.push(((image.to_vec(), factory), bytes.clone()));
    bytes
}

/// Whether `image` (header to the end of its TLVs) is signed by the
/// device key, memoised per image.
fn signature_ok(image: &[u8]) -> bool {
    static MEMO: OnceLock<Mutex<HashMap<Vec<u8>, bool>>> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    if let Some(&ok) = memo.lock().unwrap().get(image) {
        return ok;
    }
    let ok = verify(image, Some(&key().public)).is_ok();
    memo.lock().unwrap().insert(image.to_vec(), ok);
    ok
}

/// The image in `slot`, as MCUboot validates it: structure, hash and
/// signature. Its length (header to the end of its TLVs) when valid.
fn validate(slot: &[u8]) -> Result<u64, String> {
    let v = verify(slot, None).map_err(|e| e.to_string())?;
    let len = v.total_len;
    if !signature_ok(&slot[..len as usize]) {
        return Err("the signature does not verify with the device key".into());
    }
    Ok(len)
}

// ------------------------------------------------------------------ flash

/// Both slots as one storage (primary, then secondary), the way
/// [`McubootControl`] addresses them.
#[derive(Clone)]
pub struct McuFlash {
    primary: Flash,
    secondary: Flash,
}

impl McuFlash {
    fn at(&self, offset: u64, len: u64) -> Result<(Flash, u64), SimError> {
        let end = offset.checked_add(len).ok_or(SimError::OutOfBounds)?;
        if end <= SLOT {
            Ok((self.primary.clone(), offset))
        } else if offset >= SLOT && end <= 2 * SLOT {
            Ok((self.secondary.clone(), offset - SLOT))
        } else {
            Err(SimError::OutOfBounds)
        }
    }
}

impl Storage for McuFlash {
    type Error = SimError;
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), SimError> {
        let (mut f, at) = self.at(offset, buf.len() as u64)?;
        f.do_read(at, buf)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SimError> {
        let (mut f, at) = self.at(offset, data.len() as u64)?;
        f.do_write(at, data)
    }
    fn erase(&mut self, offset: u64, len: u64) -> Result<(), SimError> {
        if offset % SECTOR != 0 || len % SECTOR != 0 {
            return Err(SimError::Unaligned);
        }
        let (mut f, at) = self.at(offset, len)?;
        f.do_erase(at, len)
    }
    fn sync(&mut self) -> Result<(), SimError> {
        self.primary.do_sync()
    }
}

impl EnvStorage for McuFlash {
    fn size(&mut self) -> Option<u64> {
        Some(2 * SLOT)
    }
    fn byte_rewritable(&self) -> bool {
        false
    }
}

// ------------------------------------------------------------- bootloader

/// The MCUboot device (see the module docs).
pub struct Mcuboot {
    pub primary: Flash,
    pub secondary: Flash,
    pub scratch: Flash,
    pub status: Flash,
    log: Vec<String>,
}

fn io(e: SimError) -> String {
    e.to_string()
}

impl Mcuboot {
    /// A device as the factory left it: `release-1` signed and confirmed in
    /// the primary slot, everything else erased.
    pub fn new(power: &Rc<Power>) -> Mcuboot {
        let primary = Flash::nor("primary slot (A)", SLOT_SIZE, power);
        let factory = signed(&make_image(OLD, Health::Good, 6000), true);
        primary.data.borrow_mut()[..factory.len()].copy_from_slice(&factory);
        Mcuboot {
            primary,
            secondary: Flash::nor("secondary slot (B)", SLOT_SIZE, power),
            scratch: Flash::nor("MCUboot scratch", SECTOR as usize, power),
            status: Flash::nor("MCUboot swap status", STATUS_SIZE, power),
            log: Vec::new(),
        }
    }

    /// Both slots as one storage.
    pub fn flash(&self) -> McuFlash {
        McuFlash {
            primary: self.primary.clone(),
            secondary: self.secondary.clone(),
        }
    }

    /// A swap in progress: (type, sectors, steps done).
    fn in_progress(&self) -> Option<(SwapType, u64, u64)> {
        let b = self.status.bytes();
        let kind = match b[0] {
            2 => SwapType::Test,
            3 => SwapType::Perm,
            4 => SwapType::Revert,
            _ => return None,
        };
        let sectors = u64::from(b[1]);
        if sectors == 0 || sectors >= SLOT / SECTOR {
            // A torn header: no sector moved yet.
            return None;
        }
        let steps = &b[2..2 + 3 * sectors as usize];
        let done = steps.iter().take_while(|&&s| s == DONE).count() as u64;
        Some((kind, sectors, done))
    }

    /// Step `n` of a swap (`boot_swap_sectors` for swap-using-scratch):
    /// sector `n / 3`, part `n % 3`; recorded once done.
    fn step(&mut self, n: u64) -> Result<(), SimError> {
        let off = n / 3 * SECTOR;
        let ((src, src_off), (dst, dst_off)) = match n % 3 {
            0 => ((&self.secondary, off), (&self.scratch, 0)),
            1 => ((&self.primary, off), (&self.secondary, off)),
            _ => ((&self.scratch, 0), (&self.primary, off)),
        };
        let mut sector = vec![0u8; SECTOR as usize];
        src.clone().do_read(src_off, &mut sector)?;
        let mut dst = dst.clone();
        dst.do_erase(dst_off, SECTOR)?;
        dst.do_write(dst_off, &sector)?;
        self.status.clone().do_write(2 + n, &[DONE])
    }

    /// The trailers as a finished swap of `kind` leaves them.
    fn finish(&mut self, kind: SwapType) -> Result<(), SimError> {
        let l = layout();
        let last = SLOT - SECTOR;
        let mut p = self.primary.clone();
        p.do_erase(last, SECTOR)?;
        let n = l.magic_block() as usize;
        let mut magic = vec![0xffu8; n];
        magic[n - 16..].copy_from_slice(&l.magic());
        p.do_write(SLOT - n as u64, &magic)?;
        let cell = |v: u8| {
            let mut c = [0xffu8; 8];
            c[0] = v;
            c
        };
        p.do_write(l.swap_info_off(SLOT), &cell(kind.code()))?;
        if matches!(kind, SwapType::Perm | SwapType::Revert) {
            p.do_write(l.image_ok_off(SLOT), &cell(trailer::FLAG_SET))?;
        }
        p.do_write(l.copy_done_off(SLOT), &cell(trailer::FLAG_SET))?;
        self.secondary.clone().do_erase(last, SECTOR)
    }

    /// Swaps when the trailers (or an interrupted swap) say so.
    fn swap(&mut self) -> Result<(), String> {
        let (kind, sectors, done) = match self.in_progress() {
            Some((kind, sectors, done)) => {
                self.log.push(format!(
                    "resumes the {kind:?} swap at step {done} of {}",
                    3 * sectors
                ));
                (kind, sectors, done)
            }
            None => {
                let l = layout();
                let mut f = self.flash();
                let p = read_state(&mut f, PRIMARY, &l).map_err(|e| e.to_string())?;
                let s = read_state(&mut f, SECONDARY, &l).map_err(|e| e.to_string())?;
                let kind = trailer::swap_type(&p, &s, l.mode());
                if kind == SwapType::None {
                    return Ok(());
                }
                let new_len = match validate(&self.secondary.bytes()) {
                    Ok(len) => len,
                    Err(e) => {
                        self.log.push(format!(
                            "{kind:?} requested, but the secondary image is invalid ({e}): \
                             erases the secondary slot"
                        ));
                        return self.secondary.clone().do_erase(0, SLOT).map_err(io);
                    }
                };
                let old_len = verify(&self.primary.bytes(), None).map_or(0, |v| v.total_len);
                let sectors = new_len.max(old_len).div_ceil(SECTOR);
                self.log
                    .push(format!("{kind:?} swap of {sectors} sectors starts"));
                let mut status = self.status.clone();
                status.do_erase(0, STATUS_SIZE as u64).map_err(io)?;
                status
                    .do_write(0, &[kind.code(), sectors as u8])
                    .map_err(io)?;
                (kind, sectors, 0)
            }
        };
        for n in done..3 * sectors {
            self.step(n).map_err(io)?;
        }
        self.finish(kind).map_err(io)?;
        self.status
            .clone()
            .do_erase(0, STATUS_SIZE as u64)
            .map_err(io)?;
        self.log.push(format!("{kind:?} swap done"));
        Ok(())
    }
}

impl Loader for Mcuboot {
    type Ctl<'a> = McubootControl<McuFlash>;
    fn name(&self) -> &'static str {
        "MCUboot"
    }
    /// Swaps if asked (or resumes a swap), then boots the primary slot if
    /// its image is valid.
    fn boot(&mut self) -> Result<Slot, String> {
        self.swap()?;
        validate(&self.primary.bytes()).map_err(|e| {
            format!("MCUboot finds no bootable image: the primary slot's is invalid ({e})")
        })?;
        Ok(Slot::A)
    }
    fn control(&mut self) -> McubootControl<McuFlash> {
        McubootControl::new(self.flash(), PRIMARY, SECONDARY, layout())
            .expect("the sim's slots fit the layout")
            .with_check(ArmCheck::Hash)
    }
    fn disk(&self, _power: &Rc<Power>) -> Disk {
        Disk::flash(self.primary.clone(), self.secondary.clone())
    }
    fn image_offset(&self) -> usize {
        HEADER_SIZE
    }
    fn names_image(&self) -> bool {
        true
    }
    fn log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }
    fn payload(image: Vec<u8>) -> Vec<u8> {
        signed(&image, false)
    }
}
