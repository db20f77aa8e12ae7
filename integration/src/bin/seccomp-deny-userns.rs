//! Runs a command under a seccomp filter that, like Docker's default profile
//! for a container without CAP_SYS_ADMIN, keeps it from creating user
//! namespaces:
//!
//! - `clone` and `unshare` with `CLONE_NEWUSER` in their flags fail with EPERM;
//! - `clone3` fails with ENOSYS, because its flags sit in a struct that a
//!   filter cannot read, and ENOSYS makes C libraries fall back to `clone`;
//! - every other call, and every call from another architecture's ABI, is
//!   allowed.
//!
//! Usage: `seccomp-deny-userns COMMAND [ARGS...]`. It sets no_new_privs, which
//! an unprivileged process needs before it may install a filter, then installs
//! the filter and executes COMMAND, which inherits both.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use nix::libc;

/// `AUDIT_ARCH_*` of the architecture this helper is built for, from
/// linux/audit.h.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("seccomp-deny-userns knows the audit architecture of x86_64 and aarch64 only");

/// Offsets in `struct seccomp_data`: `nr`, `arch`, then the low 32 bits of
/// `args[0]` (little-endian on both supported architectures).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG0_LOW: u32 = 16;

/// Classic BPF opcodes, from linux/bpf_common.h.
/// BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20).
const BPF_LD_W_ABS: u16 = 0x20;
/// BPF_JMP (0x05) | BPF_JEQ (0x10) | BPF_K (0x00), and so on.
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;

/// Return values, from linux/seccomp.h.
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

fn statement(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jump_if_true: u8, jump_if_false: u8) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: jump_if_true,
        jf: jump_if_false,
        k,
    }
}

/// Builds the filter. Jump offsets count instructions after the jump.
fn filter() -> Vec<libc::sock_filter> {
    let clone_newuser = libc::CLONE_NEWUSER as u32;
    vec![
        // 0: any other ABI is allowed.
        statement(BPF_LD_W_ABS, OFFSET_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH, 0, 6),
        // 2: dispatch on the system call number.
        statement(BPF_LD_W_ABS, OFFSET_NR),
        jump(BPF_JMP_JEQ_K, libc::SYS_clone3 as u32, 6, 0),
        jump(BPF_JMP_JEQ_K, libc::SYS_clone as u32, 1, 0),
        jump(BPF_JMP_JEQ_K, libc::SYS_unshare as u32, 0, 2),
        // 6: clone or unshare: check CLONE_NEWUSER in the flags.
        statement(BPF_LD_W_ABS, OFFSET_ARG0_LOW),
        jump(BPF_JMP_JSET_K, clone_newuser, 1, 0),
        // 8: allow.
        statement(BPF_RET_K, SECCOMP_RET_ALLOW),
        // 9: fail with EPERM.
        statement(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        // 10: clone3 fails with ENOSYS.
        statement(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ]
}

fn install_filter() -> std::io::Result<()> {
    let mut instructions = filter();
    let program = libc::sock_fprog {
        len: instructions.len() as u16,
        filter: instructions.as_mut_ptr(),
    };
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `program` points to `instructions`, which outlives the call; the
    // kernel copies the filter before prctl returns.
    let result = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &program as *const libc::sock_fprog,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, program_args)) = args.split_first() else {
        eprintln!("usage: seccomp-deny-userns COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    if let Err(err) = install_filter() {
        eprintln!("seccomp-deny-userns: installing the seccomp filter failed: {err}");
        return ExitCode::from(125);
    }
    let err = Command::new(program).args(program_args).exec();
    eprintln!("seccomp-deny-userns: executing {program} failed: {err}");
    ExitCode::from(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every jump must land inside the program.
    #[test]
    fn jumps_stay_inside_program() {
        let program = filter();
        for (index, instruction) in program.iter().enumerate() {
            if instruction.code & 0x07 == 0x05 {
                let last = index + 1 + instruction.jt.max(instruction.jf) as usize;
                assert!(
                    last < program.len(),
                    "instruction {index} jumps past the end"
                );
            }
        }
    }

    #[test]
    fn last_instructions_return() {
        let program = filter();
        for instruction in &program[program.len() - 3..] {
            assert_eq!(instruction.code, BPF_RET_K);
        }
    }
}
