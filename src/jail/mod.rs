//! Namespaces, the TUN device and the jailed command's process.
