//! `Install`: the checks made once the headers are verified and before a
//! payload byte reaches the slot (device type, artifact_depends, payload
//! type), and the provides after the update (clears applied), on artifacts
//! made by Debian's `mender-artifact`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use updraft_core::artifact::Reader;
use updraft_core::boot::Slot;
use updraft_core::install::{Install, InstallError, SlotWriter, Target};
use updraft_core::store::{Installed, Provide};

/// Records what reached the slot.
#[derive(Default)]
struct Recorder {
    begun: Option<(Slot, u64)>,
    bytes: Vec<u8>,
    finished: bool,
}

impl SlotWriter for Recorder {
    type Error = String;
    fn begin(&mut self, slot: Slot, size: u64) -> Result<(), String> {
        self.begun = Some((slot, size));
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.bytes.extend_from_slice(data);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), String> {
        self.finished = true;
        Ok(())
    }
}

fn artifact(tag: &str, extra: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("updraft-install-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("rootfs.img"), &payload).unwrap();
    let out = dir.join("a.mender");
    let res = Command::new("mender-artifact")
        .current_dir(&dir)
        .args([
            "write",
            "rootfs-image",
            "-n",
            "release-2",
            "-t",
            "board-x",
            "-f",
            "rootfs.img",
        ])
        .args(extra)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("mender-artifact must be installed");
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (bytes, payload)
}

fn installed(name: &str, provides: &[(&str, &str)]) -> Installed {
    let mut i = Installed::default();
    i.artifact_name.push_str(name).unwrap();
    for (k, v) in provides {
        i.provides
            .push(Provide {
                key: (*k).try_into().unwrap(),
                value: (*v).try_into().unwrap(),
            })
            .unwrap();
    }
    i
}

fn install(
    bytes: &[u8],
    device_type: &str,
    inst: &Installed,
) -> (Recorder, Result<Installed, InstallError<String>>) {
    let mut rec = Recorder::default();
    let target = Target {
        device_type,
        installed: inst,
        payload_type: "rootfs-image",
        slot: Slot::B,
        expect_name: Some("release-2"),
    };
    let mut i = Install::new(Reader::new(), target);
    for chunk in bytes.chunks(777) {
        if let Err(e) = i.feed(chunk, &mut rec) {
            return (rec, Err(e));
        }
    }
    let r = i.finish().map(|(_, next)| next);
    (rec, r)
}

#[test]
fn a_matching_artifact_is_written_and_its_provides_replace_the_cleared_ones() {
    let (bytes, payload) = artifact("ok", &["-N", "release-1", "-d", "board.rev:2"]);
    let inst = installed(
        "release-1",
        &[
            ("board.rev", "2"),
            ("rootfs-image.version", "release-1"),
            ("data.version", "7"),
        ],
    );
    let (rec, r) = install(&bytes, "board-x", &inst);
    let next = r.unwrap();
    assert_eq!(rec.begun, Some((Slot::B, payload.len() as u64)));
    assert_eq!(rec.bytes, payload);
    assert!(rec.finished);
    assert_eq!(next.artifact_name.as_str(), "release-2");
    // mender-artifact's default clears for rootfs-image include
    // `rootfs-image.*`: the old version goes, unrelated provides stay.
    assert_eq!(next.get("rootfs-image.version"), Some("release-2"));
    assert_eq!(next.get("data.version"), Some("7"));
    assert_eq!(next.get("board.rev"), Some("2"));
}

#[test]
fn unmet_depends_and_wrong_device_type_write_nothing() {
    let (bytes, _) = artifact("dep", &["-N", "release-1", "-d", "board.rev:2"]);
    let other_name = installed("release-0", &[("board.rev", "2")]);
    let (rec, r) = install(&bytes, "board-x", &other_name);
    assert!(
        matches!(&r, Err(InstallError::Depends { key }) if key.as_str() == "artifact_name"),
        "{r:?}"
    );
    assert_eq!(rec.begun, None, "nothing reaches the slot");
    let wrong_rev = installed("release-1", &[("board.rev", "1")]);
    let (rec, r) = install(&bytes, "board-x", &wrong_rev);
    assert!(
        matches!(&r, Err(InstallError::Depends { key }) if key.as_str() == "board.rev"),
        "{r:?}"
    );
    assert_eq!(rec.begun, None);
    let ok = installed("release-1", &[("board.rev", "2")]);
    let (rec, r) = install(&bytes, "board-y", &ok);
    assert!(matches!(r, Err(InstallError::Incompatible { .. })), "{r:?}");
    assert_eq!(rec.begun, None);
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("board-y"), "{msg}");
}

#[test]
fn a_tampered_payload_is_not_verified() {
    let (mut bytes, _) = artifact("tamper", &["--compression", "none"]);
    // Flip a byte inside the payload (uncompressed, so it lands in the
    // image bytes): the digest check at the end must fail.
    let at = bytes.len() - 3000;
    bytes[at] ^= 0x55;
    let inst = installed("release-1", &[]);
    let (_, r) = install(&bytes, "board-x", &inst);
    assert!(
        matches!(
            &r,
            Err(InstallError::Artifact(
                updraft_core::artifact::Error::DigestMismatch { .. }
            ))
        ),
        "{r:?}"
    );
}
