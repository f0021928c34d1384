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
//!
//! The daemon, standalone install, block-device slot writer, update modules
//! and the boot-env tool are not written yet.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod artifact;
