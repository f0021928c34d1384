//! The Linux MTD ioctls the `updraft` command needs to write a U-Boot
//! environment on a raw flash partition (`/dev/mtdN`), as libubootenv
//! does: `MEMGETINFO` (type, size, erase and write sizes) and `MEMERASE`.
//!
//! This crate holds the only `unsafe` code of the Linux adapter: two
//! `ioctl` calls, each in one block with the argument it passes checked
//! against the kernel's `include/uapi/mtd/mtd-abi.h` layout. The adapter
//! crate (`updraft-linux`) itself stays `forbid(unsafe_code)`.
//!
//! The calls go through the C library's `ioctl` (not a raw system call),
//! so a test can stand in for an MTD device with an `LD_PRELOAD` shim.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `MTD_ABSENT`.
pub const MTD_ABSENT: u8 = 0;
/// `MTD_RAM`.
pub const MTD_RAM: u8 = 1;
/// `MTD_ROM`.
pub const MTD_ROM: u8 = 2;
/// `MTD_NORFLASH`.
pub const MTD_NORFLASH: u8 = 3;
/// `MTD_NANDFLASH`.
pub const MTD_NANDFLASH: u8 = 4;
/// `MTD_DATAFLASH`.
pub const MTD_DATAFLASH: u8 = 6;
/// `MTD_UBIVOLUME`.
pub const MTD_UBIVOLUME: u8 = 7;
/// `MTD_MLCNANDFLASH`.
pub const MTD_MLCNANDFLASH: u8 = 8;

/// `struct mtd_info_user` from `mtd-abi.h`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MtdInfoUser {
    /// Device type (`MTD_NORFLASH`, ...).
    pub kind: u8,
    /// `MTD_WRITEABLE` (0x400), `MTD_BIT_WRITEABLE` (0x800), ...
    pub flags: u32,
    /// Total size in bytes.
    pub size: u32,
    /// Erase block size in bytes.
    pub erasesize: u32,
    /// Minimal write unit in bytes (1 on NOR).
    pub writesize: u32,
    /// Out-of-band bytes per page (NAND).
    pub oobsize: u32,
    /// Reserved.
    pub padding: u64,
}

/// `struct erase_info_user` from `mtd-abi.h`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct EraseInfoUser {
    start: u32,
    length: u32,
}

// The kernel ABI sizes, which the request numbers below encode.
const _: () = assert!(core::mem::size_of::<MtdInfoUser>() == 32);
const _: () = assert!(core::mem::size_of::<EraseInfoUser>() == 8);

/// `MEMGETINFO = _IOR('M', 1, struct mtd_info_user)`.
pub const MEMGETINFO: libc::Ioctl = libc::_IOR::<MtdInfoUser>(b'M' as u32, 1);
/// `MEMERASE = _IOW('M', 2, struct erase_info_user)`.
pub const MEMERASE: libc::Ioctl = libc::_IOW::<EraseInfoUser>(b'M' as u32, 2);

/// Reads the device's MTD info (`MEMGETINFO`). Fails (typically `ENOTTY`)
/// when `file` is not an MTD character device.
pub fn mem_get_info(file: &File) -> io::Result<MtdInfoUser> {
    let mut info = MtdInfoUser::default();
    let ptr: *mut MtdInfoUser = &mut info;
    // SAFETY: MEMGETINFO writes exactly one `struct mtd_info_user` through
    // its argument; `ptr` points to a live, writable `MtdInfoUser` with the
    // same repr(C) layout and size (checked above), and the descriptor is
    // open for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), MEMGETINFO, ptr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// Erases `length` bytes at `start` (`MEMERASE`); both must be multiples
/// of the erase block size, or the kernel answers `EINVAL`.
pub fn mem_erase(file: &File, start: u32, length: u32) -> io::Result<()> {
    let erase = EraseInfoUser { start, length };
    let ptr: *const EraseInfoUser = &erase;
    // SAFETY: MEMERASE only reads one `struct erase_info_user` through its
    // argument; `ptr` points to a live `EraseInfoUser` of that layout and
    // size, and the descriptor is open for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), MEMERASE, ptr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_headers() {
        // From <mtd/mtd-abi.h> on x86_64: MEMGETINFO 0x80204d01,
        // MEMERASE 0x40084d02.
        #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
        {
            assert_eq!(MEMGETINFO, 0x8020_4d01);
            assert_eq!(MEMERASE, 0x4008_4d02);
        }
    }

    #[test]
    fn a_regular_file_is_not_an_mtd_device() {
        let file = File::open("/proc/self/exe");
        if let Ok(file) = file {
            assert!(mem_get_info(&file).is_err());
        }
    }
}
