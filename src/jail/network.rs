//! The jail's network: the TUN device, its addresses and routes, and `lo`.
//!
//! Interfaces are configured over rtnetlink from a current-thread tokio
//! runtime that exists only during this step. The runtime starts no thread,
//! and it is dropped before init forks the command.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::net::if_::if_nametoindex;
use nix::sys::stat::Mode;
use rtnetlink::packet_route::address::{AddressFlags, AddressHeaderFlags};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::JailNetwork;
use super::error::{Step, StepFailure};

/// Name of the TUN device inside the jail.
pub(super) const TUN_NAME: &str = "tun0";

/// Transmit queue length of the TUN device, in packets. The kernel's default
/// for TUN is 500, which drops packets in bursts while the supervisor's loop
/// is busy. 10000 is an estimate, not a measured optimum.
const TX_QUEUE_LEN: u32 = 10_000;

const TUN_CLONE_DEVICE: &str = "/dev/net/tun";

nix::ioctl_readwrite_bad!(tun_set_iff, libc::TUNSETIFF, libc::ifreq);
nix::ioctl_write_int_bad!(tun_set_offload, libc::TUNSETOFFLOAD);

/// Creates and configures the TUN device and `lo`. Returns the TUN device.
pub(super) fn configure(network: &JailNetwork) -> Result<OwnedFd, StepFailure> {
    let tun = create_tun()?;
    set_ipv6_sysctls()?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|error| StepFailure::io(Step::OpenNetlink, &error, "tokio runtime"))?;
    runtime.block_on(configure_interfaces(network))?;
    Ok(tun)
}

/// Opens /dev/net/tun and creates the `tun0` interface on it.
fn create_tun() -> Result<OwnedFd, StepFailure> {
    let tun = open(
        TUN_CLONE_DEVICE,
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| StepFailure::errno(Step::OpenTunDevice, errno))?;

    // SAFETY: ifreq is a plain C struct of byte arrays and integers in a
    // union, for which all zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(TUN_NAME.bytes()) {
        *slot = byte as libc::c_char;
    }
    // IFF_VNET_HDR puts a virtio-net header before each packet, which carries the checksum
    // offload flags set below.
    request.ifr_ifru.ifru_flags =
        (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;

    // SAFETY: `tun` is an open /dev/net/tun descriptor, and `request` is an
    // initialized ifreq that outlives the call. TUNSETIFF reads the struct
    // and writes the interface name back into it, nothing else.
    unsafe { tun_set_iff(tun.as_raw_fd(), &mut request) }
        .map_err(|errno| StepFailure::errno_on(Step::CreateTunInterface, errno, TUN_NAME))?;

    // With TUN_F_CSUM the jail's kernel leaves TCP and UDP checksums to the device, and the
    // supervisor marks its packets as already checked, so neither side sums every byte.
    // SAFETY: `tun` is the TUN descriptor just attached to an interface; TUNSETOFFLOAD takes
    // its flags by value and touches no memory of ours.
    unsafe { tun_set_offload(tun.as_raw_fd(), libc::TUN_F_CSUM as libc::c_int) }
        .map_err(|errno| StepFailure::errno_on(Step::CreateTunInterface, errno, TUN_NAME))?;
    Ok(tun)
}

/// Sets IPv6 sysctls of the TUN interface before it goes up. Writes those of
/// the jail's network namespace, because /proc/sys/net always shows the
/// writer's.
///
/// - `accept_dad=0`: the addresses, link-local included, are usable at once,
///   and the kernel sends no neighbour solicitations to check them.
/// - `accept_ra=0`: the routes come only from netjail, and the kernel sends
///   no router solicitations, which it would otherwise repeat for as long as
///   the jail runs.
fn set_ipv6_sysctls() -> Result<(), StepFailure> {
    for (name, value) in [("accept_dad", "0"), ("accept_ra", "0")] {
        let path = format!("/proc/sys/net/ipv6/conf/{TUN_NAME}/{name}");
        fs::write(&path, value)
            .map_err(|error| StepFailure::io(Step::SetIpv6Sysctls, &error, path))?;
    }
    Ok(())
}

async fn configure_interfaces(network: &JailNetwork) -> Result<(), StepFailure> {
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|error| StepFailure::io(Step::OpenNetlink, &error, "NETLINK_ROUTE"))?;
    let connection_task = tokio::spawn(connection);
    let result = configure_with(&handle, network).await;
    connection_task.abort();
    result
}

async fn configure_with(handle: &Handle, network: &JailNetwork) -> Result<(), StepFailure> {
    let loopback_up = LinkUnspec::new_with_name("lo").up().build();
    handle
        .link()
        .set(loopback_up)
        .execute()
        .await
        .map_err(|error| netlink_failure(Step::LoopbackUp, error, "lo"))?;

    let index = if_nametoindex(TUN_NAME)
        .map_err(|errno| StepFailure::errno_on(Step::ConfigureTunInterface, errno, TUN_NAME))?;
    let tun_up = LinkUnspec::new_with_index(index)
        .mtu(network.mtu)
        .txqueuelen(TX_QUEUE_LEN)
        .up()
        .build();
    handle.link().set(tun_up).execute().await.map_err(|error| {
        let detail = format!("{TUN_NAME} mtu {} txqueuelen {TX_QUEUE_LEN}", network.mtu);
        netlink_failure(Step::ConfigureTunInterface, error, detail)
    })?;

    add_address(handle, index, network.ipv4.into(), network.ipv4_prefix).await?;
    add_address(handle, index, network.ipv6.into(), network.ipv6_prefix).await?;
    add_default_route_v4(handle, index, network.ipv4_gateway).await?;
    add_default_route_v6(handle, index, network.ipv6_gateway).await
}

async fn add_address(
    handle: &Handle,
    index: u32,
    address: IpAddr,
    prefix: u8,
) -> Result<(), StepFailure> {
    let mut request = handle.address().add(index, address, prefix);
    if address.is_ipv6() {
        // Besides accept_dad=0: marks the address as never tentative even if
        // the sysctl was reset.
        let message = request.message_mut();
        message.header.flags |= AddressHeaderFlags::Nodad;
        message
            .attributes
            .push(rtnetlink::packet_route::address::AddressAttribute::Flags(
                AddressFlags::Nodad,
            ));
    }
    request.execute().await.map_err(|error| {
        netlink_failure(
            Step::AddAddress,
            error,
            format!("{address}/{prefix} on {TUN_NAME}"),
        )
    })
}

async fn add_default_route_v4(
    handle: &Handle,
    index: u32,
    gateway: Ipv4Addr,
) -> Result<(), StepFailure> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .output_interface(index)
        .gateway(gateway)
        .onlink();
    handle
        .route()
        .add(route.build())
        .execute()
        .await
        .map_err(|error| {
            netlink_failure(
                Step::AddRoute,
                error,
                format!("default via {gateway} dev {TUN_NAME}"),
            )
        })
}

async fn add_default_route_v6(
    handle: &Handle,
    index: u32,
    gateway: Ipv6Addr,
) -> Result<(), StepFailure> {
    let route = RouteMessageBuilder::<Ipv6Addr>::new()
        .output_interface(index)
        .gateway(gateway)
        .onlink();
    handle
        .route()
        .add(route.build())
        .execute()
        .await
        .map_err(|error| {
            netlink_failure(
                Step::AddRoute,
                error,
                format!("default via {gateway} dev {TUN_NAME}"),
            )
        })
}

/// Converts an rtnetlink error, keeping the kernel's errno when the kernel
/// sent one.
fn netlink_failure(step: Step, error: rtnetlink::Error, detail: impl Into<String>) -> StepFailure {
    let detail = detail.into();
    match error {
        rtnetlink::Error::NetlinkError(message) if message.raw_code() != 0 => {
            StepFailure::errno_on(step, Errno::from_raw(message.raw_code().abs()), detail)
        }
        other => StepFailure {
            step,
            errno: None,
            detail: format!("{detail}: {other}"),
        },
    }
}
