//! The agent's persisted state: [`StateRecord`], the [`StateStore`] trait,
//! and [`DualStore`], which keeps two alternating copies on any
//! [`Storage`] so that a power cut at any byte leaves the last complete
//! record readable.
//!
//! ## On-storage format (each copy)
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | magic `UDST` |
//! | 4..6 | schema version (u16 LE) of the payload |
//! | 6..8 | payload length (u16 LE) |
//! | 8..12 | sequence number (u32 LE, wrapping; the newer copy wins) |
//! | 12..12+len | the record, [postcard](https://docs.rs/postcard) |
//! | then 4 | CRC-32 (IEEE) of everything before it |
//!
//! A save erases and rewrites the copy that does *not* hold the newest
//! record, so the newest stays intact until the new one is complete; a
//! torn copy fails its CRC and is ignored.
//!
//! ## Schema versions
//!
//! The header carries the schema version. A newer agent keeps the decoder
//! of every older schema and converts (see [`decode`]); a record of a
//! schema newer than the agent knows is an error
//! ([`StoreError::NewerSchema`]), never silently misread.

use core::fmt;

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::api::{ID_MAX, NAME_MAX, URI_MAX};
use crate::boot::Slot;
use crate::storage::Storage;

/// The schema version this agent writes.
pub const SCHEMA: u16 = 1;
/// Most provides kept for the installed artifact.
pub const MAX_PROVIDES: usize = 8;
/// Longest provides key.
pub const PROVIDE_KEY_MAX: usize = 64;
/// Longest provides value.
pub const PROVIDE_VALUE_MAX: usize = 128;
/// Longest failure reason kept for the deployment log.
pub const REASON_MAX: usize = 256;
/// Largest encoded record plus its header and CRC.
pub const RECORD_BUF: usize = 6144;
const HEADER: usize = 12;
const MAGIC: &[u8; 4] = b"UDST";

/// One `artifact_provides` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provide {
    /// e.g. `rootfs-image.version`.
    pub key: String<PROVIDE_KEY_MAX>,
    /// Its value.
    pub value: String<PROVIDE_VALUE_MAX>,
}

/// What the device runs: the artifact name, group and provides, as Mender
/// keeps them (`artifact-name`, `artifact-group`, `artifact-provides`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The artifact name.
    pub artifact_name: String<NAME_MAX>,
    /// The artifact group (empty: none).
    pub artifact_group: String<PROVIDE_VALUE_MAX>,
    /// The type-info provides of the installed artifact (after clears).
    pub provides: Vec<Provide, MAX_PROVIDES>,
}

impl Installed {
    /// The value provided for `key` (`artifact_name` and `artifact_group`
    /// included, as Mender's depends matching sees them).
    pub fn get(&self, key: &str) -> Option<&str> {
        match key {
            "artifact_name" => Some(self.artifact_name.as_str()),
            "artifact_group" if !self.artifact_group.is_empty() => {
                Some(self.artifact_group.as_str())
            }
            _ => self
                .provides
                .iter()
                .find(|p| p.key.as_str() == key)
                .map(|p| p.value.as_str()),
        }
    }
}

/// Where an update stands, in Mender's state names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateState {
    /// Fetching and writing the artifact into the inactive slot.
    Download,
    /// Every check passed; arming the trial boot.
    ArtifactInstall,
    /// Armed; rebooting into the new slot.
    ArtifactReboot,
    /// Running the new slot on trial; checking its health.
    ArtifactVerifyReboot,
    /// Healthy; making it permanent.
    ArtifactCommit,
    /// Going back to the previous slot.
    ArtifactRollback,
    /// Rolled back; rebooting into the previous slot.
    ArtifactRollbackReboot,
    /// Checking the previous slot runs again.
    ArtifactVerifyRollbackReboot,
    /// The update failed; reporting it.
    ArtifactFailure,
    /// The update succeeded; reporting it and cleaning up.
    Cleanup,
}

impl UpdateState {
    /// Mender's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            UpdateState::Download => "Download",
            UpdateState::ArtifactInstall => "ArtifactInstall",
            UpdateState::ArtifactReboot => "ArtifactReboot",
            UpdateState::ArtifactVerifyReboot => "ArtifactVerifyReboot",
            UpdateState::ArtifactCommit => "ArtifactCommit",
            UpdateState::ArtifactRollback => "ArtifactRollback",
            UpdateState::ArtifactRollbackReboot => "ArtifactRollbackReboot",
            UpdateState::ArtifactVerifyRollbackReboot => "ArtifactVerifyRollbackReboot",
            UpdateState::ArtifactFailure => "ArtifactFailure",
            UpdateState::Cleanup => "Cleanup",
        }
    }
}

/// An update in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// Where it stands.
    pub state: UpdateState,
    /// The deployment id (empty for a standalone install).
    pub deployment_id: String<ID_MAX>,
    /// The artifact being installed.
    pub artifact_name: String<NAME_MAX>,
    /// Where it is downloaded from (URL, or a local path when standalone).
    pub uri: String<URI_MAX>,
    /// The slot that ran when the update started.
    pub from: Slot,
    /// The slot being written and tried.
    pub to: Slot,
    /// Download attempts so far (restarts count).
    pub attempts: u8,
    /// What [`StateRecord::installed`] becomes on success (known once the
    /// artifact's headers were verified).
    pub next: Option<Installed>,
    /// Why it failed (for the deployment log), when it did.
    pub reason: String<REASON_MAX>,
    /// A local install: no server to report to.
    pub standalone: bool,
}

/// Everything the agent keeps across reboots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    /// What the device runs.
    pub installed: Installed,
    /// The update in progress, if any.
    pub update: Option<Update>,
}

/// Persists [`StateRecord`]s, power-safely: after a cut during
/// [`save`](StateStore::save), [`load`](StateStore::load) returns either
/// the previous record or the new one, never a mix or nothing.
pub trait StateStore {
    /// The store's error.
    type Error: fmt::Debug + fmt::Display;
    /// The newest complete record, or `None` when none was ever saved.
    fn load(&mut self) -> Result<Option<StateRecord>, Self::Error>;
    /// Saves `record`; durable when this returns `Ok`.
    fn save(&mut self, record: &StateRecord) -> Result<(), Self::Error>;
}

/// Why a [`DualStore`] operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError<E> {
    /// The storage failed.
    Storage(E),
    /// The record does not fit one copy (or the buffer).
    TooLarge {
        /// Room for the encoded record in one copy.
        room: usize,
    },
    /// The newest copy is of a schema this agent does not know (written
    /// by a newer agent): refusing to guess.
    NewerSchema(u16),
    /// The newest copy has a valid CRC but does not decode as its schema.
    Corrupt,
    /// The two copies' offsets and size overlap or do not fit the buffer.
    Geometry,
}

impl<E: fmt::Display> fmt::Display for StoreError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Storage(e) => write!(f, "state storage: {e}"),
            StoreError::TooLarge { room } => write!(
                f,
                "the state record does not fit the {room} bytes a copy holds"
            ),
            StoreError::NewerSchema(v) => write!(
                f,
                "the state record has schema {v}, newer than this agent's {SCHEMA}"
            ),
            StoreError::Corrupt => {
                f.write_str("the state record passed its CRC but does not decode")
            }
            StoreError::Geometry => f.write_str("the state copies overlap or are too small"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for StoreError<E> {}

/// Decodes a record payload of schema `schema`. Add a branch here (and
/// keep the old type) when the record changes.
pub fn decode<E>(schema: u16, payload: &[u8]) -> Result<StateRecord, StoreError<E>> {
    match schema {
        1 => postcard::from_bytes(payload).map_err(|_| StoreError::Corrupt),
        v => Err(StoreError::NewerSchema(v)),
    }
}

/// (schema, sequence number, payload length) of a valid copy.
type CopyInfo = (u16, u32, usize);

/// Two alternating copies of the record, each `copy_size` bytes at its own
/// offset (on flash: each its own erase sectors).
pub struct DualStore<S> {
    storage: S,
    offsets: [u64; 2],
    copy_size: usize,
    /// Index and sequence number of the newest valid copy, once known.
    newest: Option<Option<(usize, u32)>>,
    buf: [u8; RECORD_BUF],
}

impl<S: Storage> DualStore<S> {
    /// Copies at `offsets[0]` and `offsets[1]`, each `copy_size` bytes.
    pub fn new(
        storage: S,
        offsets: [u64; 2],
        copy_size: usize,
    ) -> Result<Self, StoreError<S::Error>> {
        let size = copy_size as u64;
        let apart = offsets[0].abs_diff(offsets[1]) >= size;
        if !apart || !(HEADER + 4..=RECORD_BUF).contains(&copy_size) {
            return Err(StoreError::Geometry);
        }
        Ok(DualStore {
            storage,
            offsets,
            copy_size,
            newest: None,
            buf: [0; RECORD_BUF],
        })
    }

    /// The storage.
    pub fn storage(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Gives the storage back.
    pub fn into_inner(self) -> S {
        self.storage
    }

    /// Reads copy `i` into the buffer; returns (schema, seq, payload len)
    /// when it is complete and its CRC matches.
    fn read_copy(&mut self, i: usize) -> Result<Option<CopyInfo>, StoreError<S::Error>> {
        let off = self.offsets[i];
        let mut head = [0u8; HEADER];
        self.storage
            .read(off, &mut head)
            .map_err(StoreError::Storage)?;
        if &head[..4] != MAGIC {
            return Ok(None);
        }
        let schema = u16::from_le_bytes([head[4], head[5]]);
        let len = usize::from(u16::from_le_bytes([head[6], head[7]]));
        let seq = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        let total = HEADER + len + 4;
        if total > self.copy_size {
            return Ok(None);
        }
        let buf = &mut self.buf[..total];
        self.storage.read(off, buf).map_err(StoreError::Storage)?;
        let (body, crc) = buf.split_at(HEADER + len);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != want {
            return Ok(None);
        }
        Ok(Some((schema, seq, len)))
    }

    fn scan(&mut self) -> Result<Option<(usize, u32)>, StoreError<S::Error>> {
        if let Some(n) = self.newest {
            return Ok(n);
        }
        let a = self.read_copy(0)?.map(|(_, seq, _)| seq);
        let b = self.read_copy(1)?.map(|(_, seq, _)| seq);
        let newest = match (a, b) {
            (None, None) => None,
            (Some(a), None) => Some((0, a)),
            (None, Some(b)) => Some((1, b)),
            (Some(a), Some(b)) => {
                // Wrapping comparison: b is newer when b - a is "positive".
                if (b.wrapping_sub(a) as i32) > 0 {
                    Some((1, b))
                } else {
                    Some((0, a))
                }
            }
        };
        self.newest = Some(newest);
        Ok(newest)
    }
}

impl<S: Storage> StateStore for DualStore<S> {
    type Error = StoreError<S::Error>;

    fn load(&mut self) -> Result<Option<StateRecord>, Self::Error> {
        self.newest = None;
        let Some((i, _)) = self.scan()? else {
            return Ok(None);
        };
        let Some((schema, _, len)) = self.read_copy(i)? else {
            return Ok(None);
        };
        decode(schema, &self.buf[HEADER..HEADER + len]).map(Some)
    }

    fn save(&mut self, record: &StateRecord) -> Result<(), Self::Error> {
        let newest = self.scan()?;
        let (target, seq) = match newest {
            None => (0, 1),
            Some((i, seq)) => (1 - i, seq.wrapping_add(1)),
        };
        let room = self.copy_size - HEADER - 4;
        let len = postcard::to_slice(record, &mut self.buf[HEADER..self.copy_size - 4])
            .map_err(|_| StoreError::TooLarge { room })?
            .len();
        self.buf[..4].copy_from_slice(MAGIC);
        self.buf[4..6].copy_from_slice(&SCHEMA.to_le_bytes());
        self.buf[6..8].copy_from_slice(&(len as u16).to_le_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32fast::hash(&self.buf[..HEADER + len]);
        self.buf[HEADER + len..HEADER + len + 4].copy_from_slice(&crc.to_le_bytes());
        let off = self.offsets[target];
        // From here until the write completes, only the other copy is
        // valid: forget what we knew, a failure must re-scan.
        self.newest = None;
        self.storage
            .erase(off, self.copy_size as u64)
            .map_err(StoreError::Storage)?;
        self.storage
            .write(off, &self.buf[..HEADER + len + 4])
            .map_err(StoreError::Storage)?;
        self.storage.sync().map_err(StoreError::Storage)?;
        self.newest = Some(Some((target, seq)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn s<const N: usize>(v: &str) -> String<N> {
        let mut out = String::new();
        out.push_str(v).unwrap();
        out
    }

    fn record(n: u8) -> StateRecord {
        let mut installed = Installed {
            artifact_name: s("release-1"),
            ..Installed::default()
        };
        installed
            .provides
            .push(Provide {
                key: s("rootfs-image.version"),
                value: s("release-1"),
            })
            .unwrap();
        StateRecord {
            installed,
            update: Some(Update {
                state: UpdateState::ArtifactReboot,
                deployment_id: s("dep-1"),
                artifact_name: s("release-2"),
                uri: s("https://example/a.mender"),
                from: Slot::A,
                to: Slot::B,
                attempts: n,
                next: None,
                reason: String::new(),
                standalone: false,
            }),
        }
    }

    fn store(mem: MemStorage<[u8; 2048]>) -> DualStore<MemStorage<[u8; 2048]>> {
        DualStore::new(mem, [0, 1024], 1024).unwrap()
    }

    #[test]
    fn empty_then_saved_then_alternating() {
        let mut st = store(MemStorage::new([0xff; 2048]));
        assert_eq!(st.load(), Ok(None));
        for n in 0..5 {
            st.save(&record(n)).unwrap();
            assert_eq!(st.load(), Ok(Some(record(n))));
        }
        // Alternating: both copies hold a record.
        let mem = st.into_inner();
        assert_eq!(&mem.as_bytes()[..4], MAGIC);
        assert_eq!(&mem.as_bytes()[1024..1028], MAGIC);
    }

    #[test]
    fn a_cut_at_every_byte_keeps_the_old_or_the_new_record() {
        let mut base = store(MemStorage::new([0xff; 2048]));
        base.save(&record(1)).unwrap();
        base.save(&record(2)).unwrap();
        let mem = base.into_inner();
        let mut cuts = 0;
        for cut in 0.. {
            let mut st = store(mem.clone());
            st.storage().cut_after(cut);
            let done = st.save(&record(3)).is_ok();
            let mut after = store(st.into_inner());
            after.storage().restore_power();
            let got = after.load().unwrap();
            if done {
                assert_eq!(got, Some(record(3)), "cut after {cut} bytes");
                break;
            }
            assert_eq!(got, Some(record(2)), "cut after {cut} bytes");
            // And the store goes on working after the cut.
            after.save(&record(4)).unwrap();
            assert_eq!(after.load(), Ok(Some(record(4))));
            cuts += 1;
        }
        assert!(cuts > 50, "only {cuts} cut points");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut st = store(MemStorage::new([0xff; 2048]));
        st.save(&record(1)).unwrap();
        // Force the newest copy's sequence number to u32::MAX.
        let mut mem = st.into_inner();
        let b = mem.as_bytes_mut();
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let len = usize::from(u16::from_le_bytes([b[6], b[7]]));
        let crc = crc32fast::hash(&b[..HEADER + len]);
        b[HEADER + len..HEADER + len + 4].copy_from_slice(&crc.to_le_bytes());
        let mut st = store(mem);
        st.save(&record(7)).unwrap(); // seq wraps to 0
        assert_eq!(st.load(), Ok(Some(record(7))));
    }

    #[test]
    fn newer_schema_and_corruption_are_errors_not_guesses() {
        let mut st = store(MemStorage::new([0xff; 2048]));
        st.save(&record(1)).unwrap();
        let mut mem = st.into_inner();
        let b = mem.as_bytes_mut();
        b[4..6].copy_from_slice(&2u16.to_le_bytes());
        let len = usize::from(u16::from_le_bytes([b[6], b[7]]));
        let crc = crc32fast::hash(&b[..HEADER + len]);
        b[HEADER + len..HEADER + len + 4].copy_from_slice(&crc.to_le_bytes());
        let mut st = store(mem.clone());
        assert_eq!(st.load(), Err(StoreError::NewerSchema(2)));
        // A flipped bit fails the CRC: the copy is ignored.
        let b = mem.as_bytes_mut();
        b[20] ^= 1;
        let mut st = store(mem);
        assert_eq!(st.load(), Ok(None));
    }

    #[test]
    fn schema_1_encoding_is_pinned() {
        // A record written by schema 1 must stay readable by every later
        // agent: if this changes, bump SCHEMA and keep a decoder for 1.
        let r = StateRecord {
            installed: Installed {
                artifact_name: s("r1"),
                artifact_group: String::new(),
                provides: Vec::new(),
            },
            update: None,
        };
        let mut buf = [0u8; 64];
        let enc = postcard::to_slice(&r, &mut buf).unwrap();
        assert_eq!(enc, &[2, b'r', b'1', 0, 0, 0]);
        assert_eq!(decode::<()>(1, &[2, b'r', b'1', 0, 0, 0]), Ok(r));
    }

    #[test]
    fn too_large_and_bad_geometry() {
        assert!(matches!(
            DualStore::new(MemStorage::new([0u8; 64]), [0, 8], 16),
            Err(StoreError::Geometry)
        ));
        let mut st = DualStore::new(MemStorage::new([0xff; 128]), [0, 64], 64).unwrap();
        assert!(matches!(
            st.save(&record(1)),
            Err(StoreError::TooLarge { room: 48 })
        ));
    }
}
