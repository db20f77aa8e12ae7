//! netjail: run a command in a network namespace whose only way out is an allow policy
//! enforced by a userspace TCP/IP stack in the supervising process.

pub mod audit;
pub mod cli;
pub mod dns;
pub mod doctor;
pub mod http;
pub mod jail;
pub mod policy;
pub mod supervisor;
