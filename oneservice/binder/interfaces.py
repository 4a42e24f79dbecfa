"""Which interfaces may carry the node's own UDP traffic: a pure decision with reasons.

The node must never send its encrypted traffic into a virtual interface (its own taps, or
another VPN's tunnel): that would tunnel the tunnel, or loop forever once full-tunnel routes
are installed. So every interface is classified here, from facts the OS adapters gather, and
each verdict carries a human-readable reason that the API and the startup log show.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import field

from ..records import record

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Built-in name prefixes of virtual interfaces: our own ("onet", see tap/) and ZeroTier's
# taps, other VPNs, container and hypervisor bridges. Extended by settings.interfacePrefixBlacklist.
DEFAULT_PREFIX_BLACKLIST: tuple[str, ...] = (
    "onet", "zt", "tun", "tap", "utun", "wg", "tailscale", "docker", "br-", "virbr", "vmnet",
    "vboxnet", "feth",
)  # fmt: skip

# Link kinds (Linux IFLA_INFO_KIND) that are never a physical path. Tunnels wrap traffic into
# other traffic, so binding one could carry us inside another VPN or ourselves; the others
# cannot carry a packet off the machine at all. Notably absent: veth (a container's eth0 is
# its real uplink), bridge (a VM host's br0 usually is too), vlan, bond, macvlan, ppp.
VIRTUAL_LINK_KINDS: frozenset[str] = frozenset({
    "tun", "wireguard", "ipip", "gre", "gretap", "ip6gre", "ip6gretap", "erspan", "ip6erspan",
    "sit", "vti", "vti6", "ip6tnl", "xfrm", "vxlan", "geneve", "bareudp", "gtp", "amt",
    "dummy", "ifb", "nlmon", "vrf",
})  # fmt: skip

FAMILY_NAMES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


@record
class InterfaceAddress:
    family: int  # socket.AF_INET or socket.AF_INET6
    address: str
    prefixlen: int
    temporary: bool = False  # IPv6 privacy address: fine to use, but not to show as primary
    deprecated: bool = False  # preferred lifetime over: valid, used only when nothing better
    dad_failed: bool = False  # duplicate on the link: unusable


@record
class Interface:
    """What the OS says about one interface, in a form every OS adapter can fill."""

    index: int
    name: str
    kind: str | None = None  # link kind on Linux ("veth", "tun", ...); None for plain hardware
    up: bool = True  # administratively up
    running: bool = True  # has carrier / is operational
    loopback: bool = False
    addresses: tuple[InterfaceAddress, ...] = ()
    # The lowest metric of a default route through it (None: none, or the OS did not say):
    # which uplink the OS prefers, and so should the tunnel.
    default_metric: int | None = None
    # The IPv4 gateway of that default route (a router to ask for a port mapping), if any.
    default_gateway: str | None = None


@record
class BindPolicy:
    prefix_blacklist: tuple[str, ...] = DEFAULT_PREFIX_BLACKLIST
    allowlist: frozenset[str] = frozenset()
    own_tap_indexes: frozenset[int] = frozenset()
    own_tap_names: frozenset[str] = frozenset()
    virtual_subnets: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(
        cls,
        extra_prefixes: Iterable[str] = (),
        allowlist: Iterable[str] = (),
        virtual_subnets: Iterable[IPNetwork] = (),
        own_taps: Iterable[tuple[int, str]] = (),
    ) -> BindPolicy:
        """``own_taps``: (index, name) of each of our TUN devices (never bound)."""
        taps = tuple(own_taps)
        return cls(
            prefix_blacklist=DEFAULT_PREFIX_BLACKLIST + tuple(extra_prefixes),
            allowlist=frozenset(allowlist),
            virtual_subnets=tuple(virtual_subnets),
            own_tap_indexes=frozenset(index for index, _ in taps),
            own_tap_names=frozenset(name for _, name in taps),
        )


@record
class Verdict:
    """The decision for one interface and address family (family None: the whole interface)."""

    index: int
    name: str
    family: int | None
    usable: bool
    reason: str
    address: str | None = None  # the address shown (and bound, where the OS needs that)
    addresses: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        return {
            "interface": self.name,
            "index": self.index,
            "family": FAMILY_NAMES.get(self.family) if self.family is not None else None,
            "reason": self.reason,
            "address": self.address,
        }


def classify_interfaces(interfaces: Iterable[Interface], policy: BindPolicy) -> list[Verdict]:
    """One verdict per usable (interface, family), and one per skip with its reason."""
    verdicts: list[Verdict] = []
    for interface in sorted(interfaces, key=lambda i: i.index):
        reason = _interface_skip_reason(interface, policy)
        if reason is not None:
            verdicts.append(Verdict(interface.index, interface.name, None, False, reason))
            continue
        verdicts.extend(_family_verdicts(interface, policy))
    return verdicts


def _interface_skip_reason(interface: Interface, policy: BindPolicy) -> str | None:
    # Checked first and never overridable by the allowlist: binding these would let the
    # node carry itself.
    if interface.index in policy.own_tap_indexes or interface.name in policy.own_tap_names:
        return "own virtual network device"
    if interface.loopback:
        return "loopback"
    if interface.name not in policy.allowlist:
        if interface.kind in VIRTUAL_LINK_KINDS:
            return f"virtual link kind '{interface.kind}'"
        for prefix in policy.prefix_blacklist:
            if interface.name.startswith(prefix):
                return f"name matches blacklisted prefix '{prefix}'"
    if not interface.up:
        return "administratively down"
    if not interface.running:
        return "no carrier (link down)"
    if not interface.addresses:
        return "no addresses"
    return None


def _family_verdicts(interface: Interface, policy: BindPolicy) -> list[Verdict]:
    verdicts = []
    families_present = sorted({a.family for a in interface.addresses})
    for family in families_present:
        candidates = [a for a in interface.addresses if a.family == family]
        usable, reason = _usable_addresses(candidates, policy)
        if not usable:
            verdicts.append(Verdict(interface.index, interface.name, family, False, reason))
            continue
        ordered = sorted(usable, key=lambda a: (a.deprecated, a.temporary))
        verdicts.append(
            Verdict(
                interface.index,
                interface.name,
                family,
                True,
                "physical" if interface.name not in policy.allowlist else "allowlisted",
                address=ordered[0].address,
                addresses=tuple(a.address for a in ordered),
            )
        )
    return verdicts


def _usable_addresses(
    candidates: Sequence[InterfaceAddress], policy: BindPolicy
) -> tuple[list[InterfaceAddress], str]:
    usable: list[InterfaceAddress] = []
    reasons: list[str] = []
    for candidate in candidates:
        reason = address_skip_reason(candidate, policy.virtual_subnets)
        if reason is None:
            usable.append(candidate)
        else:
            reasons.append(reason)
    return usable, "; ".join(dict.fromkeys(reasons))


def address_skip_reason(
    candidate: InterfaceAddress, virtual_subnets: Sequence[IPNetwork]
) -> str | None:
    try:
        ip = ipaddress.ip_address(candidate.address.split("%", 1)[0])
    except ValueError:
        return f"unparseable address {candidate.address!r}"
    if ip.is_loopback:
        return "only loopback addresses"
    if ip.is_link_local:
        return "only link-local addresses"
    if ip.is_multicast or ip.is_unspecified:
        return f"unusable address {ip}"
    if candidate.dad_failed:
        return f"address {ip} failed duplicate address detection"
    for subnet in virtual_subnets:
        if ip.version == subnet.version and ip in subnet:
            return f"address {ip} is inside virtual network {subnet}"
    return None
