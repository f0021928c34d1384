//! The simulated MCUboot on its own (`updraft_e2e::mcuboot`): a TEST swap,
//! and the REVERT the next reset makes, cut at every write they make (torn
//! at several offsets), and cut again during the resumed swap, end with
//! both slots exactly as an uninterrupted swap leaves them and no swap in
//! progress. One other end is right: once a TEST swap has written its
//! trailers (copy_done), a cut before the image boots makes the next reset
//! revert, as in MCUboot (the trial is spent by the swap, not by a boot);
//! then both slots must be exactly as after the uninterrupted swap and
//! revert. A swap taken as done before it is (a torn half-swapped slot,
//! or a swap redone from the start over moved sectors) matches neither.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;

use updraft_boot::mcuboot::trailer::set_pending;
use updraft_boot::mcuboot::SwapType;
use updraft_boot::storage::Storage;
use updraft_e2e::mcuboot::{layout, HEADER_SIZE, SECONDARY};
use updraft_e2e::{inspect, make_image, Cut, Health, Loader, Mcuboot, Power, NEW, OLD, SLOT_SIZE};

/// A factory device with `release-2` written to the secondary slot and a
/// TEST swap requested, after `resets` clean resets.
fn device(resets: usize) -> (Rc<Power>, Mcuboot) {
    let power = Rc::new(Power::default());
    let mut m = Mcuboot::new(&power);
    let image = Mcuboot::payload(make_image(NEW, Health::Good, 8000));
    let slot = SLOT_SIZE as u64;
    let mut f = m.flash();
    f.erase(slot, slot).unwrap();
    f.write(slot, &image).unwrap();
    set_pending(&mut f, SECONDARY, &layout(), false).unwrap();
    for _ in 0..resets {
        m.boot().unwrap();
    }
    (power, m)
}

fn slots(m: &Mcuboot) -> [Vec<u8>; 2] {
    [m.primary.bytes(), m.secondary.bytes()]
}

fn image_in(slot: &[u8]) -> Option<String> {
    inspect(&slot[HEADER_SIZE..]).map(|(name, _)| name)
}

fn tears(len: usize) -> Vec<usize> {
    let mut v = vec![0, 1, len / 2, len.saturating_sub(1), len];
    v.sort_unstable();
    v.dedup();
    v
}

/// Resets until MCUboot boots (at most 4); returns which of `ends` the
/// slots match, or fails.
fn finish(power: &Power, m: &mut Mcuboot, ends: &[[Vec<u8>; 2]], what: &str) -> usize {
    let mut booted = false;
    for _ in 0..4 {
        power.restore();
        if m.boot().is_ok() {
            booted = true;
            break;
        }
        assert!(power.is_off(), "{what}: MCUboot failed with power on");
    }
    assert!(booted, "{what}: MCUboot never booted");
    assert_eq!(
        m.status.bytes()[0],
        0xff,
        "{what}: a swap is still in progress"
    );
    let slots = [m.primary.bytes(), m.secondary.bytes()];
    if let Some(i) = ends.iter().position(|e| *e == slots) {
        return i;
    }
    let want = &ends[0];
    let (slot, at) = (0..2)
        .find_map(|s| {
            let p = slots[s].iter().zip(&want[s]).position(|(a, b)| a != b)?;
            Some((s, p))
        })
        .unwrap();
    panic!(
        "{what}: the {} slot differs from an uninterrupted swap at byte {at:#x} ({:#04x}, want \
         {:#04x}), and from every other allowed end; the primary runs {:?}, the secondary holds \
         {:?}",
        ["primary", "secondary"][slot],
        slots[slot][at],
        want[slot][at],
        image_in(&slots[0]),
        image_in(&slots[1])
    );
}

/// Cuts the swap the reset after `resets` clean resets makes; returns the
/// runs.
fn sweep(resets: usize, kind: SwapType, runs_on: (&str, &str)) -> usize {
    let (power, mut m) = device(resets);
    assert_eq!(m.control().swap_type().unwrap(), kind);
    let base = power.ops().len();
    m.boot().unwrap();
    let ops = power.ops()[base..].to_vec();
    let mut ends = vec![slots(&m)];
    assert_eq!(image_in(&ends[0][0]).as_deref(), Some(runs_on.0));
    assert_eq!(image_in(&ends[0][1]).as_deref(), Some(runs_on.1));
    if m.control().swap_type().unwrap() == SwapType::Revert {
        // The trial spent before the image ran: the next reset reverts.
        m.boot().unwrap();
        ends.push(slots(&m));
    }
    let mut reverted = 0;
    assert!(ops.len() > 20, "a swap of only {} writes?", ops.len());
    let mut runs = 0;
    for (k, op) in ops.iter().enumerate() {
        let mut plans: Vec<Vec<Cut>> = tears(op.len)
            .into_iter()
            .map(|bytes| {
                vec![Cut {
                    op: base + k,
                    bytes,
                }]
            })
            .collect();
        // A second cut one byte into each write of the resumed swap.
        for j in 0..ops.len() - k + 3 {
            plans.push(vec![
                Cut {
                    op: base + k,
                    bytes: op.len / 2,
                },
                Cut {
                    op: base + k + 1 + j,
                    bytes: 1,
                },
            ]);
        }
        for cuts in plans {
            let (power, mut m) = device(resets);
            power.plan(cuts.clone());
            assert!(m.boot().is_err() && power.is_off(), "the cut happened");
            let what = format!(
                "{kind:?} swap, cuts {cuts:?} (write #{k} of the swap: {} bytes to {})",
                op.len, op.device
            );
            reverted += finish(&power, &mut m, &ends, &what);
            runs += 1;
        }
    }
    let spent = if ends.len() > 1 {
        format!(" ({reverted} reverted at the next reset: the trial spent by the swap)")
    } else {
        String::new()
    };
    println!(
        "{kind:?} swap: {} writes, {runs} cut runs, all resumed to the same slots{spent}",
        ops.len()
    );
    runs
}

#[test]
fn test_swap_resumes_to_the_same_flash_after_any_cut() {
    sweep(0, SwapType::Test, (NEW, OLD));
}

#[test]
fn revert_resumes_to_the_same_flash_after_any_cut() {
    sweep(1, SwapType::Revert, (OLD, NEW));
}
