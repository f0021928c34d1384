//! # updraft-embassy
//!
//! The embassy adapter for Updraft: an `embedded-storage` flash slot writer
//! and state store, and an embassy-net + embedded-tls HTTP transport.
//!
//! **Status:** not implemented yet. Only the dependency on `updraft-core`
//! exists, so that CI proves the core links into a `no_std` crate. The work is
//! tracked in its own issue.
#![no_std]
