//! # updraft-server
//!
//! The Updraft server: device authentication, artifacts, deployments and
//! inventory behind a Mender-compatible device and management API.
//!
//! **Status:** not implemented yet. It exports nothing; there is no server
//! binary. The work is tracked in the "server" issue.
