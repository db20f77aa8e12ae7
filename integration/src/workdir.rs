//! Temporary directories that the jailed command can use as its working
//! directory and HOME, whichever user it runs as.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, chown};
use tempfile::TempDir;

use crate::jail::Mode;

/// A temporary directory, owned by the user the jail runs as and removed on
/// drop.
pub struct Workdir {
    dir: TempDir,
    owner: Option<(Uid, Gid)>,
}

impl Workdir {
    /// Creates a directory under the system temporary directory (mode 0755)
    /// and, for [`Mode::Rootless`] started by root, hands it to the test user.
    pub fn new(mode: Mode) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("netjail-integration-")
            .tempdir()
            .expect("creating a temporary directory failed");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("setting permissions on the temporary directory failed");

        let owner = mode.switch_to_user().map(|user| (user.uid, user.gid));
        let workdir = Self { dir, owner };
        workdir.give_to_owner(workdir.path());
        workdir
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Returns `name` joined to the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name` in the directory, owned by the jail's user.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        fs::write(&path, contents).unwrap_or_else(|err| panic!("writing {path:?} failed: {err}"));
        self.give_to_owner(&path);
        path
    }

    /// Creates an empty subdirectory `name`, owned by the jail's user.
    pub fn create_dir(&self, name: &str) -> PathBuf {
        let path = self.join(name);
        fs::create_dir(&path).unwrap_or_else(|err| panic!("creating {path:?} failed: {err}"));
        self.give_to_owner(&path);
        path
    }

    fn give_to_owner(&self, path: &Path) {
        if let Some((uid, gid)) = self.owner {
            chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|err| panic!("changing the owner of {path:?} failed: {err}"));
        }
    }
}
