//! The socket between the supervisor and the jail's init during setup.
//!
//! A `SOCK_SEQPACKET` socket pair keeps message boundaries and reports the
//! peer's exit as end of file, which is how each side learns that the other
//! died. Messages are a tag byte and a payload:
//!
//! | direction | tag | payload |
//! | --- | --- | --- |
//! | supervisor to jail | `P` (proceed: ID maps written) | none |
//! | supervisor to jail | `S` (start the command) | none |
//! | jail to supervisor | `T` (TUN ready) | none, the descriptor rides in `SCM_RIGHTS` |
//! | jail to supervisor | `F` (setup failed) | step (u8), errno (i32, little-endian, 0 if none), detail (UTF-8) |

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::cmsg_space;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

use super::error::{Step, StepFailure};

const TAG_PROCEED: u8 = b'P';
const TAG_START: u8 = b'S';
const TAG_TUN_READY: u8 = b'T';
const TAG_SETUP_FAILED: u8 = b'F';

/// Maximum length of the detail text in a failure message, in bytes.
const MAX_DETAIL_LEN: usize = 1024;
/// Receive buffer size: a failure message is at most 6 + `MAX_DETAIL_LEN` bytes.
const RECEIVE_BUFFER_LEN: usize = 2048;

/// Message from the supervisor to the jail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SupervisorMessage {
    /// The ID maps are written (or not needed): set the jail up.
    Proceed,
    /// The stack is ready: run the command.
    Start,
}

/// Message from the jail to the supervisor.
#[derive(Debug)]
pub(super) enum JailReport {
    /// Setup succeeded. The descriptor is the TUN device.
    TunReady(OwnedFd),
    /// A setup step failed and the jail is exiting.
    SetupFailed(StepFailure),
}

/// One end of the supervisor-jail socket pair.
#[derive(Debug)]
pub(super) struct Channel(OwnedFd);

/// Creates the socket pair: the supervisor's end first, then the jail's.
/// Both ends are close-on-exec, so the command never inherits them.
pub(super) fn pair() -> nix::Result<(Channel, Channel)> {
    let (supervisor_end, jail_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel(supervisor_end), Channel(jail_end)))
}

impl Channel {
    pub(super) fn send_to_jail(&self, message: SupervisorMessage) -> nix::Result<()> {
        let tag = match message {
            SupervisorMessage::Proceed => TAG_PROCEED,
            SupervisorMessage::Start => TAG_START,
        };
        self.send(&[tag], None)
    }

    /// Receives the supervisor's next message. Returns `None` when the
    /// supervisor closed the socket or sent something unknown, which the jail
    /// treats the same way: exit without running anything.
    pub(super) fn receive_supervisor_message(&self) -> nix::Result<Option<SupervisorMessage>> {
        let (bytes, _descriptor) = self.receive()?;
        Ok(decode_supervisor_message(&bytes))
    }

    pub(super) fn send_tun(&self, tun: BorrowedFd<'_>) -> nix::Result<()> {
        self.send(&[TAG_TUN_READY], Some(tun.as_raw_fd()))
    }

    pub(super) fn send_failure(&self, failure: &StepFailure) -> nix::Result<()> {
        self.send(&encode_failure(failure), None)
    }

    /// Receives the jail's setup report. The outer error is a socket error,
    /// `Ok(None)` means the jail exited without a report, and the inner error
    /// describes a message that does not decode.
    pub(super) fn receive_report(&self) -> nix::Result<Result<Option<JailReport>, String>> {
        let (bytes, descriptor) = self.receive()?;
        if bytes.is_empty() {
            return Ok(Ok(None));
        }
        Ok(decode_report(&bytes, descriptor).map(Some))
    }

    fn send(&self, bytes: &[u8], descriptor: Option<RawFd>) -> nix::Result<()> {
        let iov = [IoSlice::new(bytes)];
        let descriptors: Vec<RawFd> = descriptor.into_iter().collect();
        let rights = [ControlMessage::ScmRights(&descriptors)];
        let control: &[ControlMessage<'_>] = if descriptors.is_empty() { &[] } else { &rights };
        loop {
            match sendmsg::<()>(
                self.0.as_raw_fd(),
                &iov,
                control,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno),
                Ok(_) => return Ok(()),
            }
        }
    }

    /// Receives one message and the descriptor attached to it, if any. An
    /// empty message means end of file: no message is ever empty.
    fn receive(&self) -> nix::Result<(Vec<u8>, Option<OwnedFd>)> {
        let mut buffer = [0u8; RECEIVE_BUFFER_LEN];
        let mut control = cmsg_space!([RawFd; 1]);
        loop {
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let message = match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno),
                Ok(message) => message,
            };
            let length = message.bytes;
            let mut descriptor = None;
            for control_message in message.cmsgs()? {
                if let ControlMessageOwned::ScmRights(received) = control_message {
                    for raw in received {
                        // SAFETY: the kernel installed `raw` in this process for
                        // this message, and nothing else refers to it yet, so
                        // the OwnedFd is its only owner.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        // Extra descriptors, which no message carries, are closed here.
                        descriptor.get_or_insert(owned);
                    }
                }
            }
            return Ok((buffer[..length].to_vec(), descriptor));
        }
    }
}

fn decode_supervisor_message(bytes: &[u8]) -> Option<SupervisorMessage> {
    match bytes {
        [TAG_PROCEED] => Some(SupervisorMessage::Proceed),
        [TAG_START] => Some(SupervisorMessage::Start),
        _ => None,
    }
}

fn encode_failure(failure: &StepFailure) -> Vec<u8> {
    let errno = failure.errno.map_or(0, |errno| errno as i32);
    let mut detail_len = failure.detail.len().min(MAX_DETAIL_LEN);
    while !failure.detail.is_char_boundary(detail_len) {
        detail_len -= 1;
    }

    let mut bytes = Vec::with_capacity(6 + detail_len);
    bytes.push(TAG_SETUP_FAILED);
    bytes.push(failure.step as u8);
    bytes.extend_from_slice(&errno.to_le_bytes());
    bytes.extend_from_slice(&failure.detail.as_bytes()[..detail_len]);
    bytes
}

fn decode_report(bytes: &[u8], descriptor: Option<OwnedFd>) -> Result<JailReport, String> {
    match bytes {
        [TAG_TUN_READY] => match descriptor {
            Some(tun) => Ok(JailReport::TunReady(tun)),
            None => Err("TUN ready message without a file descriptor".to_string()),
        },
        [TAG_SETUP_FAILED, step, e0, e1, e2, e3, detail @ ..] => {
            let step = Step::from_u8(*step).ok_or_else(|| format!("unknown setup step {step}"))?;
            let errno = match i32::from_le_bytes([*e0, *e1, *e2, *e3]) {
                0 => None,
                code => Some(Errno::from_raw(code)),
            };
            let detail = String::from_utf8_lossy(detail).into_owned();
            Ok(JailReport::SetupFailed(StepFailure {
                step,
                errno,
                detail,
            }))
        }
        _ => Err(format!(
            "unknown message {:?}",
            String::from_utf8_lossy(bytes)
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    fn decode_failure(bytes: &[u8]) -> StepFailure {
        match decode_report(bytes, None).unwrap() {
            JailReport::SetupFailed(failure) => failure,
            JailReport::TunReady(_) => panic!("expected a failure report"),
        }
    }

    #[test]
    fn failure_round_trip() {
        let failure = StepFailure::errno_on(Step::AddRoute, Errno::ENETUNREACH, "default via x");
        assert_eq!(decode_failure(&encode_failure(&failure)), failure);
    }

    #[test]
    fn failure_without_errno_round_trip() {
        let failure = StepFailure {
            step: Step::OpenNetlink,
            errno: None,
            detail: "x".into(),
        };
        assert_eq!(decode_failure(&encode_failure(&failure)), failure);
    }

    #[test]
    fn failure_wire_layout() {
        let failure = StepFailure::errno_on(Step::OpenTunDevice, Errno::ENOENT, "/dev");
        let expected = [
            b'F',
            Step::OpenTunDevice as u8,
            2,
            0,
            0,
            0,
            b'/',
            b'd',
            b'e',
            b'v',
        ];
        assert_eq!(encode_failure(&failure), expected);
    }

    #[test]
    fn failure_detail_truncated_on_char_boundary() {
        let detail = "é".repeat(MAX_DETAIL_LEN);
        let failure = StepFailure::errno_on(Step::MountProc, Errno::EPERM, detail);
        let bytes = encode_failure(&failure);
        assert_eq!(bytes.len(), 6 + MAX_DETAIL_LEN);
        let decoded = decode_failure(&bytes);
        assert_eq!(decoded.detail.chars().count(), MAX_DETAIL_LEN / 2);
    }

    #[test]
    fn report_unknown_step_rejected() {
        let error = decode_report(&[b'F', 0, 0, 0, 0, 0], None).unwrap_err();
        assert!(error.contains("unknown setup step"), "{error}");
    }

    #[test]
    fn report_short_failure_rejected() {
        assert!(decode_report(&[b'F', 1, 0], None).is_err());
    }

    #[test]
    fn report_tun_without_descriptor_rejected() {
        assert!(decode_report(b"T", None).is_err());
    }

    #[test]
    fn supervisor_messages_decode() {
        assert_eq!(
            decode_supervisor_message(b"P"),
            Some(SupervisorMessage::Proceed)
        );
        assert_eq!(
            decode_supervisor_message(b"S"),
            Some(SupervisorMessage::Start)
        );
        assert_eq!(decode_supervisor_message(b"SS"), None);
        assert_eq!(decode_supervisor_message(b""), None);
    }

    #[test]
    fn socket_pair_passes_descriptor() {
        let (supervisor, jail) = pair().unwrap();
        let file = File::open("/proc/self/status").unwrap();
        jail.send_tun(std::os::fd::AsFd::as_fd(&file)).unwrap();
        match supervisor.receive_report().unwrap().unwrap() {
            Some(JailReport::TunReady(fd)) => assert_ne!(fd.as_raw_fd(), file.as_raw_fd()),
            other => panic!("expected TunReady, got {other:?}"),
        }
    }

    #[test]
    fn socket_pair_reports_peer_exit_as_none() {
        let (supervisor, jail) = pair().unwrap();
        drop(jail);
        assert!(matches!(supervisor.receive_report(), Ok(Ok(None))));
        assert_eq!(supervisor.receive_supervisor_message(), Ok(None));
    }

    #[test]
    fn socket_pair_carries_start() {
        let (supervisor, jail) = pair().unwrap();
        supervisor.send_to_jail(SupervisorMessage::Start).unwrap();
        assert_eq!(
            jail.receive_supervisor_message(),
            Ok(Some(SupervisorMessage::Start))
        );
    }
}
