//! Mounts inside the jail's mount namespace: propagation, resolv.conf and /proc.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::error::{Step, StepFailure};

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Directory where the tmpfs with the jail's resolv.conf is mounted briefly. The
/// jail mounts a new /proc over it right after, and /proc exists on every
/// Linux system, unlike /tmp or /run.
const STAGING_DIR: &str = "/proc";
const STAGED_RESOLV_CONF: &str = "/proc/resolv.conf";

/// Flags for every file system the jail mounts itself.
fn restrictive_flags() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
}

/// Makes every mount private, recursively, so nothing the jail mounts
/// propagates to the host. Without a user namespace the copied mounts keep
/// the host's shared propagation until this runs.
pub(super) fn make_mounts_private() -> Result<(), StepFailure> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|errno| StepFailure::errno_on(Step::MakeMountsPrivate, errno, "/"))
}

/// Bind-mounts a read-only file with `content` over the file that
/// /etc/resolv.conf resolves to.
///
/// The file lives on a tmpfs mounted only in the jail's mount namespace.
/// The tmpfs is unmounted from its staging directory once the bind mount
/// refers to the file, so the file disappears with the jail and never touches
/// the host's file systems.
pub(super) fn bind_resolv_conf(content: &str) -> Result<(), StepFailure> {
    let target = resolve_resolv_conf()?;

    let tmpfs_flags = restrictive_flags();
    mount(
        Some("tmpfs"),
        STAGING_DIR,
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=0755,size=64k"),
    )
    .map_err(|errno| StepFailure::errno_on(Step::StageResolvConf, errno, STAGING_DIR))?;
    write_world_readable(Path::new(STAGED_RESOLV_CONF), content)
        .map_err(|error| StepFailure::io(Step::StageResolvConf, &error, STAGED_RESOLV_CONF))?;

    let target_text = target.display().to_string();
    let bind = |flags: MsFlags| {
        mount(
            Some(STAGED_RESOLV_CONF),
            &target,
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|errno| StepFailure::errno_on(Step::BindResolvConf, errno, &target_text))
    };
    bind(MsFlags::MS_BIND)?;
    // A bind mount takes the read-only flag only from a remount.
    bind(MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | restrictive_flags())?;

    umount2(STAGING_DIR, MntFlags::MNT_DETACH)
        .map_err(|errno| StepFailure::errno_on(Step::StageResolvConf, errno, "unmounting"))
}

/// Returns the file that /etc/resolv.conf resolves to after following
/// symbolic links. On systemd-resolved hosts that is usually
/// /run/systemd/resolve/stub-resolv.conf.
fn resolve_resolv_conf() -> Result<PathBuf, StepFailure> {
    fs::canonicalize(RESOLV_CONF)
        .map_err(|error| StepFailure::io(Step::ResolveResolvConf, &error, ""))
}

fn write_world_readable(path: &Path, content: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    file.write_all(content.as_bytes())
}

/// Mounts a /proc that shows the jail's PID namespace, over the host's.
pub(super) fn mount_proc() -> Result<(), StepFailure> {
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        restrictive_flags(),
        None::<&str>,
    )
    .map_err(|errno| StepFailure::errno_on(Step::MountProc, errno, "/proc"))
}
