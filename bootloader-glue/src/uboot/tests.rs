use super::*;
use crate::storage::{MemError, MemStorage};
use std::{format, vec, vec::Vec};

#[test]
fn selection_rules() {
    use CopyId::*;
    assert_eq!(select_copy(None, None), None);
    assert_eq!(select_copy(Some(7), None), Some(First));
    assert_eq!(select_copy(None, Some(7)), Some(Second));
    assert_eq!(select_copy(Some(1), Some(1)), Some(First));
    assert_eq!(select_copy(Some(1), Some(2)), Some(Second));
    assert_eq!(select_copy(Some(3), Some(2)), Some(First));
    assert_eq!(select_copy(Some(255), Some(0)), Some(Second));
    assert_eq!(select_copy(Some(0), Some(255)), Some(First));
    // 0xff beats everything but 0.
    assert_eq!(select_copy(Some(255), Some(254)), Some(First));
    assert_eq!(select_copy(Some(1), Some(255)), Some(Second));
    assert_eq!(select_copy(Some(255), Some(255)), Some(First));
}

#[test]
fn parse_entries() {
    let env = Env::parse(b"b=2\0a=1\0noeq\0=x\0b=3\0e=\0\0junk\xff").unwrap();
    assert_eq!(env.used_len(), 24);
    assert_eq!(env.get("b"), Some(&b"3"[..]));
    assert_eq!(env.get("e"), Some(&b""[..]));
    assert_eq!(env.get("noeq"), None);
    assert_eq!(env.get(""), None);
    let sorted: Vec<_> = env.sorted().map(|v| (v.name, v.value)).collect();
    assert_eq!(
        sorted,
        vec![
            (&b"a"[..], &b"1"[..]),
            (&b"b"[..], &b"3"[..]),
            (&b"e"[..], &b""[..])
        ]
    );
    assert_eq!(env.entries().count(), 4);
    assert_eq!(env.count(), 3);
}

#[test]
fn parse_end_of_area_and_unterminated() {
    assert_eq!(Env::parse(b"a=1\0").unwrap().get("a"), Some(&b"1"[..]));
    assert_eq!(Env::parse(b"").unwrap().count(), 0);
    assert_eq!(
        Env::parse(b"a=1\0b=2"),
        Err(ParseError::Unterminated { offset: 4 })
    );
    assert_eq!(
        Env::parse(&[0xff; 8]),
        Err(ParseError::Unterminated { offset: 0 })
    );
}

#[test]
fn encode_sorts_merges_and_pads() {
    let base = Env::parse(b"z=26\0a=1\0m=old\0\0").unwrap();
    let mut out = [0xaau8; 40];
    let used = encode_copy(
        &mut out,
        Redundancy::Redundant,
        9,
        base,
        &[
            Change::set("m", "new"),
            Change::remove("z"),
            Change::set("b", "2"),
            Change::set("b", "two"),
            Change::remove("absent"),
        ],
        0,
    )
    .unwrap();
    assert_eq!(&out[5..5 + used], b"a=1\0b=two\0m=new\0\0");
    assert!(out[5 + used..].iter().all(|&b| b == 0));
    let copy = EnvCopy::new(&out, Redundancy::Redundant).unwrap();
    assert!(copy.crc_ok());
    assert_eq!(copy.flags(), Some(9));
    assert_eq!(copy.stored_crc(), crc32fast::hash(&out[5..]));
}

#[test]
fn encode_errors() {
    let mut out = [0u8; 12];
    assert_eq!(
        encode_copy(
            &mut out,
            Redundancy::Single,
            0,
            Env::empty(),
            &[Change::set("abc", "defgh")],
            0
        ),
        Err(EncodeError::TooLarge {
            needed: 11,
            available: 8
        })
    );
    assert_eq!(
        encode_copy(
            &mut out,
            Redundancy::Single,
            0,
            Env::empty(),
            &[Change::set("ok", "1"), Change::set("a=b", "1")],
            0
        ),
        Err(EncodeError::InvalidChange(InvalidChange {
            index: 1,
            error: ChangeError::NameContainsEquals
        }))
    );
    assert_eq!(
        Change::set("", "x").validate_uboot(),
        Err(ChangeError::EmptyName)
    );
    assert_eq!(
        Change::set_bytes(b"a", b"x\0y").validate_uboot(),
        Err(ChangeError::ContainsNul)
    );
    let mut tiny = [0u8; 5];
    assert_eq!(
        encode_copy(&mut tiny, Redundancy::Redundant, 0, Env::empty(), &[], 0),
        Err(EncodeError::BufferTooSmall { len: 5 })
    );
}

const SIZE: usize = 0x400;

fn pair(vars: &[Change<'_>], flags: (u8, u8)) -> UbootEnv<MemStorage<Vec<u8>>> {
    let mut a = vec![0u8; SIZE];
    let mut b = vec![0u8; SIZE];
    encode_copy(
        &mut a,
        Redundancy::Redundant,
        flags.0,
        Env::empty(),
        vars,
        0xff,
    )
    .unwrap();
    encode_copy(
        &mut b,
        Redundancy::Redundant,
        flags.1,
        Env::empty(),
        vars,
        0xff,
    )
    .unwrap();
    UbootEnv::redundant(
        EnvLocation {
            storage: MemStorage::new(a),
            offset: 0,
        },
        EnvLocation {
            storage: MemStorage::new(b),
            offset: 0,
        },
        SIZE,
    )
}

#[test]
fn update_alternates_copies_and_counts_flags() {
    let mut env = pair(&[Change::set("bootcount", "0")], (1, 1));
    let mut buf = vec![0u8; SIZE];
    let loaded = env.load(&mut buf).unwrap();
    assert_eq!((loaded.copy, loaded.flags), (CopyId::First, Some(1)));
    assert!(loaded.other_valid);

    let expected = [
        (CopyId::Second, 2u8),
        (CopyId::First, 3),
        (CopyId::Second, 4),
    ];
    for (i, (copy, flags)) in expected.into_iter().enumerate() {
        let value = format!("{}", i + 1);
        let out = env
            .update(&mut buf, &[Change::set("bootcount", &value)])
            .unwrap();
        assert_eq!(
            out,
            UpdateOutcome::Written {
                copy,
                flags: Some(flags)
            }
        );
        let loaded = env.load(&mut buf).unwrap();
        assert_eq!(loaded.copy, copy);
        assert_eq!(loaded.env.get_str("bootcount"), Some(value.as_str()));
    }
    // No-op changes write nothing.
    assert_eq!(
        env.update(
            &mut buf,
            &[Change::set("bootcount", "3"), Change::remove("nope")]
        )
        .unwrap(),
        UpdateOutcome::Unchanged
    );
}

#[test]
fn wraparound_zero_beats_255() {
    let mut env = pair(&[Change::set("x", "1")], (254, 1));
    let mut buf = vec![0u8; SIZE];
    // First copy (254) is active; the write goes to the second with 255.
    let out = env.update(&mut buf, &[Change::set("x", "2")]).unwrap();
    assert_eq!(
        out,
        UpdateOutcome::Written {
            copy: CopyId::Second,
            flags: Some(255)
        }
    );
    let out = env.update(&mut buf, &[Change::set("x", "3")]).unwrap();
    assert_eq!(
        out,
        UpdateOutcome::Written {
            copy: CopyId::First,
            flags: Some(0)
        }
    );
    let loaded = env.load(&mut buf).unwrap();
    assert_eq!(loaded.copy, CopyId::First);
    assert_eq!(loaded.env.get_str("x"), Some("3"));
}

#[test]
fn load_errors() {
    let mut env = pair(&[Change::set("x", "1")], (1, 1));
    let mut small = vec![0u8; SIZE - 1];
    assert!(matches!(
        env.load(&mut small),
        Err(LoadError::BufferSize { .. })
    ));
    for copy in [CopyId::First, CopyId::Second] {
        env.location_mut(copy).unwrap().storage.as_bytes_mut()[10] ^= 1;
    }
    let mut buf = vec![0u8; SIZE];
    assert!(matches!(env.load(&mut buf), Err(LoadError::NoValidCopy)));
    assert!(matches!(
        env.update(&mut buf, &[Change::set("x", "2")]),
        Err(UpdateError::Load(LoadError::NoValidCopy))
    ));
}

#[test]
fn too_large_update_writes_nothing() {
    let mut env = pair(&[Change::set("x", "1")], (1, 1));
    let before = env
        .location(CopyId::Second)
        .unwrap()
        .storage
        .as_bytes()
        .to_vec();
    let mut buf = vec![0u8; SIZE];
    let big = "v".repeat(SIZE);
    assert!(matches!(
        env.update(&mut buf, &[Change::set("x", &big)]),
        Err(UpdateError::TooLarge { .. })
    ));
    assert_eq!(
        env.location(CopyId::Second).unwrap().storage.as_bytes(),
        &before[..]
    );
}

#[test]
fn single_copy_update() {
    let mut a = vec![0u8; SIZE];
    encode_copy(
        &mut a,
        Redundancy::Single,
        0,
        Env::empty(),
        &[Change::set("a", "1")],
        0xff,
    )
    .unwrap();
    let mut env = UbootEnv::single(MemStorage::new(a), 0, SIZE);
    let mut buf = vec![0u8; SIZE];
    assert_eq!(
        env.update(&mut buf, &[Change::set("b", "2")]).unwrap(),
        UpdateOutcome::Written {
            copy: CopyId::First,
            flags: None
        }
    );
    let loaded = env.load(&mut buf).unwrap();
    assert_eq!(loaded.env.get_str("a"), Some("1"));
    assert_eq!(loaded.env.get_str("b"), Some("2"));
    assert_eq!(loaded.flags, None);
}

#[test]
fn storage_error_is_reported() {
    let mut env = pair(&[Change::set("x", "1")], (1, 1));
    env.location_mut(CopyId::Second)
        .unwrap()
        .storage
        .cut_after(3);
    let mut buf = vec![0u8; SIZE];
    assert_eq!(
        env.update(&mut buf, &[Change::set("x", "2")]),
        Err(UpdateError::Storage(MemError::PowerLost))
    );
    let loaded = env.load(&mut buf).unwrap();
    assert_eq!(loaded.env.get_str("x"), Some("1"));
}

#[test]
fn boolean_flags_select_like_uboot_env_flash() {
    use CopyId::{First, Second};
    let cases = [
        ((Some(1), Some(0)), Some(First)),
        ((Some(0), Some(1)), Some(Second)),
        ((Some(1), Some(1)), Some(First)),
        ((Some(0), Some(0)), Some(First)),
        ((Some(0xff), Some(1)), Some(First)),
        ((Some(1), Some(0xff)), Some(Second)),
        ((Some(0xff), Some(0)), Some(First)),
        ((Some(0), Some(0xff)), Some(Second)),
        // libubootenv picks the second here; U-Boot (which boots) the first.
        ((Some(0xff), Some(0xff)), Some(First)),
        // No U-Boot rule: libubootenv's higher-wins.
        ((Some(2), Some(3)), Some(Second)),
        ((Some(3), Some(2)), Some(First)),
        ((Some(0), None), Some(First)),
        ((None, Some(0)), Some(Second)),
        ((None, None), None),
    ];
    for ((a, b), want) in cases {
        assert_eq!(select_copy_boolean(a, b), want, "{a:?}/{b:?}");
    }
}
