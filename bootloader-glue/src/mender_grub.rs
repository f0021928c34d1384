//! Mender's double GRUB environment (`grub-mender-grubenv`): two GRUB env
//! blocks, each guarded by a lock file whose checksum is known.
//!
//! ```text
//! mender_grubenv1/env             bootcount=0, mender_boot_part=2, upgrade_available=0
//! mender_grubenv1/lock            editing=0
//! mender_grubenv1/lock.sha256sum  "<sha256 of lock>  lock"
//! mender_grubenv2/{env,lock,lock.sha256sum}
//! ```
//!
//! # Writing
//!
//! [`MenderGrubenv::update`] follows Mender's order (user space
//! `grub-mender-grubenv-set` and GRUB's `mender_save_env`), each step made
//! durable before the next: lock2 `editing=1` → env2 → lock2 `editing=0` →
//! lock1 `editing=1` → env1 → lock1 `editing=0`. The lock edits change one
//! byte in place, so a lock back at `editing=0` is byte-identical to the one
//! `lock.sha256sum` was made from.
//!
//! # Reading, and repair at read
//!
//! A lock is *clean* when its SHA-256 matches `lock.sha256sum` (user space's
//! `sha256sum -c`) **and** it is a GRUB env block with `editing=0` (GRUB's
//! `mender_check_and_restore_env`); anything else (a torn, emptied or
//! `editing=1` lock) is *dirty*. Before reading or writing,
//! [`MenderGrubenv::load`] repairs as both Mender tools do: lock2 dirty →
//! copy env1 over env2, then restore lock2; else lock1 dirty → copy env2 over
//! env1, then restore lock1. The variables are then read from env1. So a
//! cut up to lock2 going back to `editing=0` gives the old values, a cut
//! once lock1 is touched gives the new ones. Both locks dirty cannot happen
//! with this protocol and is reported as
//! [`MenderGrubError::BothLocksDirty`] rather than guessed at. The repair
//! writes env first and the lock last, so a cut during the repair leaves the
//! lock dirty and the repair runs again.
//!
//! One more case the Mender tools leave alone: a cut after lock2 is back at
//! `editing=0` but before lock1 is touched leaves both locks clean with env2
//! new and env1 old. The state read is the old one (env1), but the halves
//! differ, and a later update that edits each file on its own (as
//! `grub-mender-grubenv-set` does) could then complete into a mix of both.
//! So when both locks are clean and env2 differs from env1, `load` copies
//! env1 over env2 under lock2 ([`Repair::ResyncedSecond`]), and `update`
//! always writes env1 + changes to both halves.
//!
//! A restored lock gets the bytes that match its `lock.sha256sum`: the other
//! (clean) lock's bytes, or Mender's `blank_grubenv` + `editing=0`, or
//! `grub-editenv create` + `set editing=0`; if none matches,
//! [`MenderGrubError::LockNotRestorable`].
//!
//! # Files and memory
//!
//! Files are reached through [`GrubenvDir`] (read the start of a file,
//! replace a whole file durably). [`MemDir`] keeps the six files in memory
//! and cuts power at any replace, leaving the file untouched, truncated with
//! a prefix of the new bytes (`grub-editenv`: `O_TRUNC` then write) or
//! overwritten in place up to a byte (GRUB's `save_env`). With `std`,
//! `FsDir` works on a real directory. Nothing allocates: the caller gives a
//! work buffer of two halves, each at least as large as an env or lock file
//! ([`WORK_SIZE`] for standard 1024-byte blocks).

use crate::change::Change;
use crate::grub::{BlockError, EditError, GrubEnv, GrubEnvMut, BLOCK_SIZE};
use core::fmt;
use sha2::{Digest, Sha256};

/// Work buffer size for standard 1024-byte env and lock blocks: two blocks.
pub const WORK_SIZE: usize = 2 * BLOCK_SIZE;

/// The largest `lock.sha256sum` file accepted (`<64 hex>  lock\n` is 71
/// bytes).
const SUM_MAX: usize = 256;

/// One of the two halves (`mender_grubenv1/`, `mender_grubenv2/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Half {
    /// `mender_grubenv1/`: written last, read by GRUB and user space.
    First,
    /// `mender_grubenv2/`: written first, the backup.
    Second,
}

impl Half {
    /// The directory name.
    pub const fn dir_name(self) -> &'static str {
        match self {
            Half::First => "mender_grubenv1",
            Half::Second => "mender_grubenv2",
        }
    }

    /// The other half.
    pub const fn other(self) -> Half {
        match self {
            Half::First => Half::Second,
            Half::Second => Half::First,
        }
    }
}

/// A file of a half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `env`: the variables.
    Env,
    /// `lock`: a GRUB env block holding `editing=0` or `editing=1`.
    Lock,
    /// `lock.sha256sum`: `sha256sum lock` output for the clean lock.
    LockSum,
}

impl FileKind {
    /// The file name inside its half's directory.
    pub const fn file_name(self) -> &'static str {
        match self {
            FileKind::Env => "env",
            FileKind::Lock => "lock",
            FileKind::LockSum => "lock.sha256sum",
        }
    }
}

/// One of the six files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// The half (directory).
    pub half: Half,
    /// The file in it.
    pub kind: FileKind,
}

impl FileId {
    /// All six files.
    pub const ALL: [FileId; 6] = [
        FileId::new(Half::First, FileKind::Env),
        FileId::new(Half::First, FileKind::Lock),
        FileId::new(Half::First, FileKind::LockSum),
        FileId::new(Half::Second, FileKind::Env),
        FileId::new(Half::Second, FileKind::Lock),
        FileId::new(Half::Second, FileKind::LockSum),
    ];

    /// The file `kind` of `half`.
    pub const fn new(half: Half, kind: FileKind) -> FileId {
        FileId { half, kind }
    }

    /// A number 0..6, the position in [`FileId::ALL`].
    pub const fn index(self) -> usize {
        let h = match self.half {
            Half::First => 0,
            Half::Second => 3,
        };
        let k = match self.kind {
            FileKind::Env => 0,
            FileKind::Lock => 1,
            FileKind::LockSum => 2,
        };
        h + k
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.half.dir_name(), self.kind.file_name())
    }
}

/// The directory holding `mender_grubenv1/` and `mender_grubenv2/`.
///
/// Contract: [`read`](GrubenvDir::read) copies the start of the file into
/// `buf` (up to `buf.len()` bytes) and returns the file's whole length;
/// [`replace`](GrubenvDir::replace) makes the file hold exactly `data` and
/// returns only once that is durable (write + fsync). A replace cut by a
/// power loss may leave the file in any state between old and new content
/// (emptied, a prefix, new bytes over old ones); the protocol copes.
pub trait GrubenvDir {
    /// The directory's own error.
    type Error: fmt::Debug + fmt::Display;

    /// Reads the first `buf.len()` bytes (or fewer) of `file` and returns
    /// the file's length.
    fn read(&mut self, file: FileId, buf: &mut [u8]) -> Result<usize, Self::Error>;

    /// Replaces the whole content of `file` with `data`, durably.
    fn replace(&mut self, file: FileId, data: &[u8]) -> Result<(), Self::Error>;
}

impl<T: GrubenvDir + ?Sized> GrubenvDir for &mut T {
    type Error = T::Error;

    fn read(&mut self, file: FileId, buf: &mut [u8]) -> Result<usize, Self::Error> {
        (**self).read(file, buf)
    }

    fn replace(&mut self, file: FileId, data: &[u8]) -> Result<(), Self::Error> {
        (**self).replace(file, data)
    }
}

/// Why a [`MemDir`] operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemDirError {
    /// The data is larger than the file capacity `N`.
    TooLarge {
        /// Bytes given.
        len: usize,
        /// The capacity of each file.
        capacity: usize,
    },
    /// The simulated power cut happened during or before this replace.
    PowerLost,
}

impl fmt::Display for MemDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemDirError::TooLarge { len, capacity } => {
                write!(f, "{len} bytes do not fit a {capacity}-byte in-memory file")
            }
            MemDirError::PowerLost => f.write_str("simulated power cut: replace lost"),
        }
    }
}

impl core::error::Error for MemDirError {}

/// How the replace that a power cut interrupts leaves its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// Not touched at all (the cut came just before the replace).
    Untouched,
    /// Truncated, then the first `n` new bytes written (`n = 0`: emptied),
    /// as a cut inside `grub-editenv` leaves it.
    Truncated(usize),
    /// The first `n` new bytes written over the old content, the rest old
    /// (the size grows only if the new bytes go past the old end), as a cut
    /// inside GRUB's `save_env` or an in-place rewrite leaves it.
    Overwritten(usize),
}

/// The six files in memory (each up to `N` bytes), with a simulated power
/// cut at any [`replace`](GrubenvDir::replace).
///
/// [`cut_at`](MemDir::cut_at)`(op, tear)` makes replace number `op`
/// (counting from 0 since creation or [`reset_ops`](MemDir::reset_ops))
/// leave its file as `tear` says and fail with [`MemDirError::PowerLost`];
/// every later replace fails without touching anything. Reads keep
/// working, so a test can "reboot" and read what survived, or
/// [`restore_power`](MemDir::restore_power) and go on.
#[derive(Debug, Clone)]
pub struct MemDir<const N: usize> {
    files: [[u8; N]; 6],
    lens: [usize; 6],
    cut: Option<(usize, Tear)>,
    powered: bool,
    ops: usize,
}

impl<const N: usize> Default for MemDir<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MemDir<N> {
    /// Six empty files, power on.
    pub const fn new() -> Self {
        MemDir {
            files: [[0; N]; 6],
            lens: [0; 6],
            cut: None,
            powered: true,
            ops: 0,
        }
    }

    /// The content of `file`.
    pub fn file(&self, file: FileId) -> &[u8] {
        let i = file.index();
        &self.files[i][..self.lens[i]]
    }

    /// Sets the content of `file` directly (no power-cut simulation, not
    /// counted as an operation).
    pub fn set_file(&mut self, file: FileId, data: &[u8]) -> Result<(), MemDirError> {
        let i = file.index();
        let dest = self.files[i]
            .get_mut(..data.len())
            .ok_or(MemDirError::TooLarge {
                len: data.len(),
                capacity: N,
            })?;
        dest.copy_from_slice(data);
        self.lens[i] = data.len();
        Ok(())
    }

    /// Schedules a power cut at replace number `op`, leaving that file as
    /// `tear` says.
    pub fn cut_at(&mut self, op: usize, tear: Tear) {
        self.cut = Some((op, tear));
    }

    /// Powers back on and cancels any scheduled cut.
    pub fn restore_power(&mut self) {
        self.cut = None;
        self.powered = true;
    }

    /// Whether a scheduled cut has happened.
    pub fn power_lost(&self) -> bool {
        !self.powered
    }

    /// Replace calls so far (including an interrupted one).
    pub fn ops(&self) -> usize {
        self.ops
    }

    /// Sets [`ops`](MemDir::ops) back to 0.
    pub fn reset_ops(&mut self) {
        self.ops = 0;
    }
}

impl<const N: usize> GrubenvDir for MemDir<N> {
    type Error = MemDirError;

    fn read(&mut self, file: FileId, buf: &mut [u8]) -> Result<usize, MemDirError> {
        let content = self.file(file);
        let n = content.len().min(buf.len());
        buf[..n].copy_from_slice(&content[..n]);
        Ok(content.len())
    }

    fn replace(&mut self, file: FileId, data: &[u8]) -> Result<(), MemDirError> {
        if data.len() > N {
            return Err(MemDirError::TooLarge {
                len: data.len(),
                capacity: N,
            });
        }
        if !self.powered {
            return Err(MemDirError::PowerLost);
        }
        let op = self.ops;
        self.ops += 1;
        let i = file.index();
        match self.cut {
            Some((at, tear)) if at == op => {
                self.powered = false;
                match tear {
                    Tear::Untouched => {}
                    Tear::Truncated(n) => {
                        let n = n.min(data.len());
                        self.files[i][..n].copy_from_slice(&data[..n]);
                        self.lens[i] = n;
                    }
                    Tear::Overwritten(n) => {
                        let n = n.min(data.len());
                        self.files[i][..n].copy_from_slice(&data[..n]);
                        self.lens[i] = self.lens[i].max(n);
                    }
                }
                Err(MemDirError::PowerLost)
            }
            _ => {
                self.files[i][..data.len()].copy_from_slice(data);
                self.lens[i] = data.len();
                Ok(())
            }
        }
    }
}

/// Why a [`MenderGrubenv`] operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MenderGrubError<E> {
    /// Reading or replacing a file failed. After a failed replace the
    /// environment is still consistent: the next load repairs it.
    Storage {
        /// The file.
        file: FileId,
        /// The directory's error.
        error: E,
    },
    /// A file is larger than half the work buffer.
    FileTooLarge {
        /// The file.
        file: FileId,
        /// Its length.
        len: usize,
        /// Half the work buffer.
        capacity: usize,
    },
    /// A `lock.sha256sum` file is not `<64 hex digits>  lock`: the
    /// environment was provisioned wrongly (user space would fail too).
    BadChecksumFile {
        /// The half whose checksum file is broken.
        half: Half,
    },
    /// Both locks are dirty: the write protocol never leaves that state, so
    /// neither env can be trusted.
    BothLocksDirty,
    /// The env file of a half whose lock is clean is not a complete GRUB
    /// env block (missing signature, truncated line): damaged outside the
    /// protocol.
    BadEnv {
        /// The env file.
        file: FileId,
    },
    /// The changes cannot be applied to an env block (invalid name, block
    /// too small); nothing was written.
    Edit(EditError),
    /// A dirty lock cannot be restored: no known lock content matches its
    /// `lock.sha256sum`.
    LockNotRestorable {
        /// The half whose lock is dirty.
        half: Half,
    },
    /// A lock written back to `editing=0` does not match its
    /// `lock.sha256sum` (the lock did not hold `editing=0` as a
    /// one-character value); the update stopped there.
    LockMismatchAfterUpdate {
        /// The half.
        half: Half,
    },
}

impl<E: fmt::Display> fmt::Display for MenderGrubError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MenderGrubError::Storage { file, error } => write!(f, "{file}: {error}"),
            MenderGrubError::FileTooLarge {
                file,
                len,
                capacity,
            } => write!(
                f,
                "{file} has {len} bytes, more than the {capacity}-byte work area"
            ),
            MenderGrubError::BadChecksumFile { half } => write!(
                f,
                "{}/lock.sha256sum is not a sha256sum line for `lock`",
                half.dir_name()
            ),
            MenderGrubError::BothLocksDirty => {
                f.write_str("both Mender grubenv locks are dirty: neither env can be trusted")
            }
            MenderGrubError::BadEnv { file } => {
                write!(f, "{file} is not a complete GRUB environment block")
            }
            MenderGrubError::Edit(e) => write!(f, "{e}"),
            MenderGrubError::LockNotRestorable { half } => write!(
                f,
                "{}/lock cannot be restored: no known content matches lock.sha256sum",
                half.dir_name()
            ),
            MenderGrubError::LockMismatchAfterUpdate { half } => write!(
                f,
                "{}/lock does not match lock.sha256sum after the update",
                half.dir_name()
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for MenderGrubError<E> {}

/// What [`MenderGrubenv::load`] had to repair first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Repair {
    /// Both locks were clean.
    None,
    /// Lock2 was dirty: env1 was copied over env2 (the interrupted update
    /// is dropped).
    RestoredSecond,
    /// Lock1 was dirty: env2 was copied over env1 (the interrupted update
    /// is completed).
    RestoredFirst,
    /// Both locks were clean but env2 differed from env1 (a cut between
    /// the two halves of an update, or an edit outside the protocol): env1
    /// was copied over env2 under lock2, so that a later update cannot mix
    /// the two.
    ResyncedSecond,
}

/// The environment as loaded: env1's block, after any repair.
#[derive(Debug, Clone, Copy)]
pub struct LoadedGrubenv<'b> {
    /// The variables (from `mender_grubenv1/env`).
    pub env: GrubEnv<'b>,
    /// What was repaired before reading.
    pub repair: Repair,
}

/// Mender's double GRUB environment over a [`GrubenvDir`].
#[derive(Debug)]
pub struct MenderGrubenv<D> {
    dir: D,
}

type Res<T, D> = Result<T, MenderGrubError<<D as GrubenvDir>::Error>>;

impl<D: GrubenvDir> MenderGrubenv<D> {
    /// The environment in `dir`.
    pub fn new(dir: D) -> Self {
        MenderGrubenv { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &D {
        &self.dir
    }

    /// The directory, mutably.
    pub fn dir_mut(&mut self) -> &mut D {
        &mut self.dir
    }

    /// Gives back the directory.
    pub fn into_inner(self) -> D {
        self.dir
    }

    /// Creates all six files the way Mender's `make-env-and-lock-files`
    /// does: each env is `blank_grubenv` (signature, then `#` up to 1024
    /// bytes) with `vars` set in order, each lock is `blank_grubenv` with
    /// `editing=0`, each `lock.sha256sum` is `<sha256>  lock\n`. Half 2 is
    /// written first, half 1 last, but provisioning as a whole is not
    /// power-safe: run it at image build or first boot.
    ///
    /// `work` needs [`BLOCK_SIZE`] bytes at least.
    pub fn provision(&mut self, work: &mut [u8], vars: &[Change<'_>]) -> Res<(), D> {
        let capacity = work.len();
        let block = work
            .get_mut(..BLOCK_SIZE)
            .ok_or(MenderGrubError::FileTooLarge {
                file: FileId::new(Half::First, FileKind::Env),
                len: BLOCK_SIZE,
                capacity,
            })?;
        let mut sum = [0u8; 71];
        for half in [Half::Second, Half::First] {
            let mut env = GrubEnvMut::create_blank(block).map_err(|_| too_small(half))?;
            env.apply(vars).map_err(MenderGrubError::Edit)?;
            self.replace(FileId::new(half, FileKind::Env), block)?;
            blank_lock(block);
            let n = sum_line(block, &mut sum);
            self.replace(FileId::new(half, FileKind::Lock), block)?;
            self.replace(FileId::new(half, FileKind::LockSum), &sum[..n])?;
        }
        Ok(())
    }

    /// Which locks are clean, without repairing anything. `work` is used as
    /// scratch.
    pub fn lock_states(&mut self, work: &mut [u8]) -> Res<(bool, bool), D> {
        let first = self.lock_clean(Half::First, work)?;
        let second = self.lock_clean(Half::Second, work)?;
        Ok((first, second))
    }

    /// Repairs if needed (see the [module docs](self)) and reads env1 into
    /// the first half of `work`.
    pub fn load<'b>(&mut self, work: &'b mut [u8]) -> Res<LoadedGrubenv<'b>, D> {
        let (repair, len) = self.repair(work)?;
        let half = work.len() / 2;
        let block = &work[..half][..len];
        let env = GrubEnv::new(block).map_err(|_| MenderGrubError::BadEnv {
            file: FileId::new(Half::First, FileKind::Env),
        })?;
        Ok(LoadedGrubenv { env, repair })
    }

    /// Applies `changes` (in order) with the six-step protocol, after
    /// repairing if needed. The new block is env1 with the changes applied
    /// (as GRUB's `mender_save_env` saves what it loaded from env1), written
    /// to env2 and then env1. An error before the first write (invalid
    /// change, block too small) leaves everything untouched; a storage error
    /// during the protocol leaves a state the next
    /// [`load`](MenderGrubenv::load) repairs to the old or the new values.
    pub fn update(&mut self, work: &mut [u8], changes: &[Change<'_>]) -> Res<Repair, D> {
        let (repair, len) = self.repair(work)?;
        let half = work.len() / 2;
        let (a, b) = work.split_at_mut(half);
        let file = FileId::new(Half::First, FileKind::Env);
        let mut env =
            GrubEnvMut::new(&mut a[..len]).map_err(|_| MenderGrubError::BadEnv { file })?;
        env.apply(changes).map_err(MenderGrubError::Edit)?;
        for h in [Half::Second, Half::First] {
            self.write_locked(h, &a[..len], b)?;
        }
        Ok(repair)
    }

    /// Writes env `h` under its lock: lock `editing=1`, env, lock
    /// `editing=0` (checked against `lock.sha256sum`). `lock_buf` is
    /// scratch for the lock.
    fn write_locked(&mut self, h: Half, env: &[u8], lock_buf: &mut [u8]) -> Res<(), D> {
        let lock = FileId::new(h, FileKind::Lock);
        let lock_len = self.read_whole(lock, lock_buf)?;
        let lock_bytes = &mut lock_buf[..lock_len];
        set_editing(lock_bytes, "1", lock)?;
        self.replace(lock, lock_bytes)?;
        self.replace(FileId::new(h, FileKind::Env), env)?;
        set_editing(lock_bytes, "0", lock)?;
        if sha256(lock_bytes) != self.expected_sum(h)? {
            return Err(MenderGrubError::LockMismatchAfterUpdate { half: h });
        }
        self.replace(lock, lock_bytes)
    }

    /// Applies the repair rule. Afterwards the first half of `work` holds
    /// env1 (validated); returns its length.
    fn repair(&mut self, work: &mut [u8]) -> Res<(Repair, usize), D> {
        let second_clean = self.lock_clean(Half::Second, work)?;
        let first_clean = self.lock_clean(Half::First, work)?;
        let repair = match (first_clean, second_clean) {
            (false, false) => return Err(MenderGrubError::BothLocksDirty),
            (true, true) => Repair::None,
            (true, false) => Repair::RestoredSecond,
            (false, true) => Repair::RestoredFirst,
        };
        let half = work.len() / 2;
        let (a, b) = work.split_at_mut(half);
        let dirty = match repair {
            Repair::RestoredSecond => Half::Second,
            Repair::RestoredFirst => Half::First,
            Repair::None | Repair::ResyncedSecond => {
                let len = self.read_valid_env(Half::First, a)?;
                let file = FileId::new(Half::Second, FileKind::Env);
                let len2 = self.dir.read(file, b).map_err(storage(file))?;
                if b.get(..len2) == Some(&a[..len]) {
                    return Ok((repair, len));
                }
                self.write_locked(Half::Second, &a[..len], b)?;
                return Ok((Repair::ResyncedSecond, len));
            }
        };
        let good = dirty.other();
        let len = self.read_valid_env(good, a)?;
        self.replace(FileId::new(dirty, FileKind::Env), &a[..len])?;
        let lock_len = self.restorable_lock(dirty, b)?;
        self.replace(FileId::new(dirty, FileKind::Lock), &b[..lock_len])?;
        Ok((repair, len))
    }

    /// Reads env `h` into `buf` and checks it is a complete block.
    fn read_valid_env(&mut self, h: Half, buf: &mut [u8]) -> Res<usize, D> {
        let file = FileId::new(h, FileKind::Env);
        let len = self.read_whole(file, buf)?;
        let env = GrubEnv::new(&buf[..len]).map_err(|_| MenderGrubError::BadEnv { file })?;
        env.validate()
            .map_err(|_| MenderGrubError::BadEnv { file })?;
        Ok(len)
    }

    /// Puts into `buf` lock content for half `h` matching its checksum
    /// file; returns its length.
    fn restorable_lock(&mut self, h: Half, buf: &mut [u8]) -> Res<usize, D> {
        let expected = self.expected_sum(h)?;
        let other = FileId::new(h.other(), FileKind::Lock);
        let len = self.read_whole(other, buf)?;
        if sha256(&buf[..len]) == expected {
            return Ok(len);
        }
        if let Some(block) = buf.get_mut(..BLOCK_SIZE) {
            blank_lock(block);
            if sha256(&*block) == expected {
                return Ok(BLOCK_SIZE);
            }
            if let Ok(mut env) = GrubEnvMut::create(block) {
                if env.set("editing", "0").is_ok() && sha256(env.as_bytes()) == expected {
                    return Ok(BLOCK_SIZE);
                }
            }
        }
        Err(MenderGrubError::LockNotRestorable { half: h })
    }

    /// Whether the lock of `h` is clean; uses `work` as scratch.
    fn lock_clean(&mut self, h: Half, work: &mut [u8]) -> Res<bool, D> {
        let expected = self.expected_sum(h)?;
        let file = FileId::new(h, FileKind::Lock);
        let half = work.len() / 2;
        let buf = &mut work[..half];
        let len = self.dir.read(file, buf).map_err(storage(file))?;
        let Some(lock) = buf.get(..len) else {
            // Larger than any lock we could have written: not ours.
            return Ok(false);
        };
        if sha256(lock) != expected {
            return Ok(false);
        }
        Ok(GrubEnv::new(lock)
            .ok()
            .and_then(|env| env.get("editing"))
            .is_some_and(|v| v.raw() == b"0"))
    }

    /// The hash `lock.sha256sum` of half `h` names.
    fn expected_sum(&mut self, h: Half) -> Res<[u8; 32], D> {
        let file = FileId::new(h, FileKind::LockSum);
        let mut buf = [0u8; SUM_MAX];
        let len = self.dir.read(file, &mut buf).map_err(storage(file))?;
        buf.get(..len)
            .and_then(parse_sum)
            .ok_or(MenderGrubError::BadChecksumFile { half: h })
    }

    fn read_whole(&mut self, file: FileId, buf: &mut [u8]) -> Res<usize, D> {
        let len = self.dir.read(file, buf).map_err(storage(file))?;
        if len > buf.len() {
            return Err(MenderGrubError::FileTooLarge {
                file,
                len,
                capacity: buf.len(),
            });
        }
        Ok(len)
    }

    fn replace(&mut self, file: FileId, data: &[u8]) -> Res<(), D> {
        self.dir.replace(file, data).map_err(storage(file))
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn storage<E>(file: FileId) -> impl FnOnce(E) -> MenderGrubError<E> {
    move |error| MenderGrubError::Storage { file, error }
}

fn too_small<E>(half: Half) -> MenderGrubError<E> {
    MenderGrubError::FileTooLarge {
        file: FileId::new(half, FileKind::Env),
        len: BLOCK_SIZE,
        capacity: 0,
    }
}

/// Sets `editing` in a lock block in place (same length: one byte moves).
fn set_editing<E>(lock: &mut [u8], value: &str, file: FileId) -> Result<(), MenderGrubError<E>> {
    let mut env =
        GrubEnvMut::new(lock).map_err(|_: BlockError| MenderGrubError::BadEnv { file })?;
    env.set("editing", value).map_err(MenderGrubError::Edit)
}

/// Mender's lock: `blank_grubenv` with `editing=0`. `block` is
/// [`BLOCK_SIZE`] bytes.
fn blank_lock(block: &mut [u8]) {
    if let Ok(mut env) = GrubEnvMut::create_blank(block) {
        // Always fits: 10 bytes in a 1024-byte block.
        let _ = env.set("editing", "0");
    }
}

/// Writes `<hex sha256 of data>  lock\n` into `out` (71 bytes); returns
/// the length.
fn sum_line(data: &[u8], out: &mut [u8; 71]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha256(data);
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out[64..].copy_from_slice(b"  lock\n");
    71
}

/// Parses a `sha256sum` line for the file `lock`: 64 hex digits, a space,
/// a space or `*` (binary mode), `lock`, an optional newline.
fn parse_sum(line: &[u8]) -> Option<[u8; 32]> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (hex, rest) = line.split_at_checked(64)?;
    if rest != b"  lock" && rest != b" *lock" {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(feature = "std")]
pub use fs::{FsDir, WriteMode};

#[cfg(feature = "std")]
mod fs {
    use super::{FileId, GrubenvDir};
    use std::fs::{File, OpenOptions};
    use std::io::{self, Read, Write};
    use std::path::{Path, PathBuf};

    /// How [`FsDir`] replaces a file.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum WriteMode {
        /// Overwrite the existing file from offset 0, set its length,
        /// fsync: the file keeps its disk sectors, as GRUB's `save_env`
        /// needs. A cut leaves new bytes over old ones. The default.
        #[default]
        InPlace,
        /// Write a temporary file, fsync, rename over, fsync the directory
        /// (`grub::write_file_atomic`): a cut leaves the old or the new
        /// file, but the file moves to new sectors.
        Atomic,
    }

    /// The Mender grubenv directory on a file system (e.g.
    /// `/boot/efi/grub-mender-grubenv`, or the `ENV_DIR` of
    /// `/etc/mender_grubenv.config`).
    #[derive(Debug, Clone)]
    pub struct FsDir {
        root: PathBuf,
        mode: WriteMode,
    }

    impl FsDir {
        /// The directory `root` (holding `mender_grubenv1/` and
        /// `mender_grubenv2/`), writing in place.
        pub fn new(root: impl Into<PathBuf>) -> Self {
            FsDir {
                root: root.into(),
                mode: WriteMode::InPlace,
            }
        }

        /// Uses `mode` for writes.
        pub fn with_mode(mut self, mode: WriteMode) -> Self {
            self.mode = mode;
            self
        }

        /// The root directory.
        pub fn root(&self) -> &Path {
            &self.root
        }

        /// The path of `file`.
        pub fn path(&self, file: FileId) -> PathBuf {
            self.root
                .join(file.half.dir_name())
                .join(file.kind.file_name())
        }

        /// Creates the two half directories (for provisioning).
        pub fn create_dirs(&self) -> io::Result<()> {
            for half in [super::Half::First, super::Half::Second] {
                std::fs::create_dir_all(self.root.join(half.dir_name()))?;
            }
            Ok(())
        }
    }

    impl GrubenvDir for FsDir {
        type Error = io::Error;

        fn read(&mut self, file: FileId, buf: &mut [u8]) -> io::Result<usize> {
            let mut f = File::open(self.path(file))?;
            let len = usize::try_from(f.metadata()?.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
            let want = len.min(buf.len());
            f.read_exact(&mut buf[..want])?;
            Ok(len)
        }

        fn replace(&mut self, file: FileId, data: &[u8]) -> io::Result<()> {
            let path = self.path(file);
            match self.mode {
                WriteMode::Atomic => crate::grub::write_file_atomic(&path, data),
                WriteMode::InPlace => {
                    let existed = path.exists();
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)?;
                    f.write_all(data)?;
                    f.set_len(data.len() as u64)?;
                    f.sync_all()?;
                    if !existed {
                        if let Some(dir) = path.parent() {
                            File::open(dir)?.sync_all()?;
                        }
                    }
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Dir = MemDir<BLOCK_SIZE>;

    fn provisioned() -> MenderGrubenv<Dir> {
        let mut env = MenderGrubenv::new(Dir::new());
        let mut work = [0u8; WORK_SIZE];
        env.provision(
            &mut work,
            &[
                Change::set("bootcount", "0"),
                Change::set("mender_boot_part", "2"),
                Change::set("upgrade_available", "0"),
            ],
        )
        .unwrap();
        env
    }

    fn part(env: &mut MenderGrubenv<Dir>) -> (Repair, [u8; 1]) {
        let mut work = [0u8; WORK_SIZE];
        let loaded = env.load(&mut work).unwrap();
        let v = loaded.env.get("mender_boot_part").unwrap().raw();
        (loaded.repair, [v[0]])
    }

    #[test]
    fn provision_matches_mender_layout() {
        let env = provisioned();
        let dir = env.dir();
        let lock = dir.file(FileId::new(Half::First, FileKind::Lock));
        assert_eq!(lock.len(), BLOCK_SIZE);
        assert!(lock.starts_with(b"# GRUB Environment Block\nediting=0\n###"));
        let e = dir.file(FileId::new(Half::Second, FileKind::Env));
        assert!(e.starts_with(
            b"# GRUB Environment Block\nbootcount=0\nmender_boot_part=2\nupgrade_available=0\n#"
        ));
        let sum = dir.file(FileId::new(Half::First, FileKind::LockSum));
        assert_eq!(sum.len(), 71);
        assert_eq!(parse_sum(sum).unwrap(), sha256(lock));
    }

    #[test]
    fn update_then_load() {
        let mut env = provisioned();
        let mut work = [0u8; WORK_SIZE];
        env.dir_mut().reset_ops();
        let r = env
            .update(&mut work, &[Change::set("mender_boot_part", "3")])
            .unwrap();
        assert_eq!(r, Repair::None);
        assert_eq!(env.dir().ops(), 6);
        assert_eq!(part(&mut env), (Repair::None, *b"3"));
        assert_eq!(env.lock_states(&mut work).unwrap(), (true, true));
    }

    #[test]
    fn cut_in_env2_gives_old_cut_in_env1_gives_new() {
        for (op, expect, repair) in [
            (0, b"2", Repair::RestoredSecond),
            (1, b"2", Repair::RestoredSecond),
            (2, b"2", Repair::RestoredSecond),
            (3, b"3", Repair::RestoredFirst), // lock1 emptied
            (4, b"3", Repair::RestoredFirst),
            (5, b"3", Repair::RestoredFirst),
        ] {
            let mut env = provisioned();
            env.dir_mut().reset_ops();
            env.dir_mut().cut_at(op, Tear::Truncated(0));
            let mut work = [0u8; WORK_SIZE];
            assert!(env
                .update(&mut work, &[Change::set("mender_boot_part", "3")])
                .is_err());
            env.dir_mut().restore_power();
            assert_eq!(part(&mut env), (repair, *expect), "op {op}");
            assert_eq!(part(&mut env), (Repair::None, *expect), "op {op}");
        }
    }

    #[test]
    fn cut_between_halves_resyncs_env2() {
        let mut env = provisioned();
        env.dir_mut().reset_ops();
        env.dir_mut().cut_at(3, Tear::Untouched);
        let mut work = [0u8; WORK_SIZE];
        assert!(env
            .update(&mut work, &[Change::set("mender_boot_part", "3")])
            .is_err());
        env.dir_mut().restore_power();
        let e1 = FileId::new(Half::First, FileKind::Env);
        let e2 = FileId::new(Half::Second, FileKind::Env);
        assert_ne!(env.dir().file(e1), env.dir().file(e2));
        assert_eq!(part(&mut env), (Repair::ResyncedSecond, *b"2"));
        assert_eq!(env.dir().file(e1), env.dir().file(e2));
        assert_eq!(part(&mut env), (Repair::None, *b"2"));
        assert_eq!(env.lock_states(&mut work).unwrap(), (true, true));
    }

    #[test]
    fn both_dirty_is_an_error() {
        let mut env = provisioned();
        for h in [Half::First, Half::Second] {
            env.dir_mut()
                .set_file(FileId::new(h, FileKind::Lock), b"")
                .unwrap();
        }
        let mut work = [0u8; WORK_SIZE];
        assert!(matches!(
            env.load(&mut work),
            Err(MenderGrubError::BothLocksDirty)
        ));
    }

    #[test]
    fn sum_parsing() {
        let mut line = [0u8; 71];
        sum_line(b"x", &mut line);
        assert!(parse_sum(&line).is_some());
        assert!(parse_sum(&line[..70]).is_some());
        let mut star = line;
        star[65] = b'*';
        assert!(parse_sum(&star).is_some());
        assert!(parse_sum(&line[..60]).is_none());
        let mut other = line;
        other[69] = b'x';
        assert!(parse_sum(&other).is_none());
        let mut bad = line;
        bad[0] = b'g';
        assert!(parse_sum(&bad).is_none());
    }
}
