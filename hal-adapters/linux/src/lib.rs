//! # updraft-linux
//!
//! The Linux adapter of Updraft and the library behind the `updraft`
//! command. So far it holds the artifact tool:
//!
//! * [`artifact`]: drive `updraft-core`'s streaming reader from any
//!   [`std::io::Read`] (a file, stdin, an HTTP body), load verification keys
//!   from PEM files, and summarise an artifact the way `mender-artifact read`
//!   does; write artifacts as `mender-artifact write` does
//!   ([`artifact::write`], an API a build tool can call) and sign them
//!   ([`artifact::sign`]).
//! * [`boot_env`]: the `updraft boot-env print|set` tool, like libubootenv's
//!   `fw_printenv`/`fw_setenv`, on a U-Boot env (`fw_env.config`) or a Mender
//!   double GRUB env.
//! * [`mcuboot`]: the `updraft mcuboot show|verify|set-pending|confirm` tool
//!   for MCUboot images and slot trailers.
//!
//! * [`agent`]: the update daemon (`updraft daemon`), `updraft-core`'s
//!   state machine driven with blocking I/O: HTTPS to a Mender-compatible
//!   server, A/B slots on block devices or files, the state record in a
//!   file, U-Boot or GRUB for the trial boot.
//!
//! Standalone install and update modules are not written yet.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod artifact;
pub mod boot_env;
pub mod mcuboot;
