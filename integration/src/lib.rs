//! End-to-end tests for netjail: fixture servers on the loopback interface and
//! a harness that runs the real `netjail` binary with real clients in the jail.
//!
//! No test sends a packet anywhere but 127.0.0.0/8, ::1 and the jail's own
//! addresses, and netjail always gets the fixture resolver.

pub mod audit;
pub mod clients;
pub mod content;
pub mod environment;
pub mod fixtures;
pub mod jail;
pub mod workdir;
