"""Make the kernel's routes and rules match a routing plan (Linux, rtnetlink).

Everything we add carries route protocol ROUTE_PROTOCOL or a rule priority in
RULE_PRIORITIES (oneservice/marks.py), so what is ours can be found again: after a crash,
``remove_all`` deletes exactly that, and nothing of anyone else's. Blocking calls: run in an
executor.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable

from ..marks import ROUTE_PROTOCOL, RULE_PRIORITIES
from ..rtnetlink import NetlinkError, Rtnetlink, route_body, rule_body
from .planner import UNREACHABLE, KernelRoute, KernelRule, Refusal

log = logging.getLogger(__name__)

_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
_VERSIONS = {socket.AF_INET: 4, socket.AF_INET6: 6}
_ANY = {4: "0.0.0.0", 6: "::"}
RTN_UNICAST, RTN_UNREACHABLE = 1, 7  # rtm_type (linux/rtnetlink.h)


class LinuxRoutes:
    """Use from one worker thread only (its netlink requests block)."""

    def __init__(self) -> None:
        self._socket: Rtnetlink | None = None

    @property
    def _ipr(self) -> Rtnetlink:
        if self._socket is None:
            self._socket = Rtnetlink()
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def apply(self, routes: Iterable[KernelRoute], rules: Iterable[KernelRule]) -> list[Refusal]:
        """Add what is missing, delete what is ours and no longer wanted; returns what the
        kernel refused (one line each; what failed is retried at the next call)."""
        errors: list[Refusal] = []
        wanted = set(routes)
        present = self._our_routes()
        # A route that only changes its gateway, device or kind (a full tunnel moving to
        # another gateway) is replaced in one step: deleted first, its traffic would take the
        # machine's own default route in between.
        slots = {(r.family, r.target, r.table): r for r in present if r not in wanted}
        replaced = set()
        for route in sorted(wanted - set(present)):
            old = slots.get((route.family, route.target, route.table))
            if old is not None:
                self._add_route(route, errors, "replace")
                replaced.add(old)
        for route, message in present.items():
            if route not in wanted and route not in replaced:
                self._try(errors, None, f"delete route {_describe(route)}",
                          self._ipr.delete_route, message)  # fmt: skip
        for route in sorted(wanted - set(present)):
            if (route.family, route.target, route.table) not in slots:
                self._add_route(route, errors)
        # Rules: the new ones first, then the old ones go. A split that changes (its ports, or
        # "only" for "except") never leaves a moment in which the listed traffic goes direct.
        wanted_rules = set(rules)
        present_rules = self._our_rules()
        for rule in sorted(wanted_rules - set(present_rules)):
            self._try(errors, rule, f"add rule {_describe_rule(rule)}", self._ipr.add_rule,
                      _rule_message(rule))  # fmt: skip
        for rule, message in present_rules.items():
            if rule not in wanted_rules:
                self._try(errors, None, f"delete rule {_describe_rule(rule)}",
                          self._ipr.delete_rule, message)  # fmt: skip
        return errors

    def route_devices(self, addresses: Iterable[str]) -> dict[str, str | None]:
        """Where the kernel would send a packet to each address (as an application's would go:
        main routing policy, no bound device): the device's name, or None if unreachable."""
        names = self._link_names()
        devices: dict[str, str | None] = {}
        for address in addresses:
            try:
                answer = self._ipr.route_to(address)
            except (NetlinkError, ValueError):
                devices[address] = None  # unreachable (ours, when we block a family)
                continue
            unicast = answer.header["type"] == RTN_UNICAST
            devices[address] = names.get(answer.attrs.get("oif")) if unicast else None
        return devices

    def remove_all(self) -> int:
        """Delete every route and rule of ours (a crash's leftovers, or at a clean stop)."""
        errors: list[Refusal] = []
        present, rules = self._our_routes(), self._our_rules()
        for route, message in present.items():
            self._try(errors, None, f"delete route {_describe(route)}", self._ipr.delete_route,
                      message)  # fmt: skip
        for rule, message in rules.items():
            self._try(errors, None, f"delete rule {_describe_rule(rule)}",
                      self._ipr.delete_rule, message)  # fmt: skip
        for error in errors:
            log.warning("%s", error.message)
        return len(present) + len(rules) - len(errors)

    def _add_route(self, route: KernelRoute, errors: list[Refusal], verb: str = "add") -> None:
        target, _, length = route.target.partition("/")
        family = _FAMILIES[route.family]
        if route.kind == UNREACHABLE:
            body = route_body(family, target, int(length), route.table, ROUTE_PROTOCOL,
                              kind=RTN_UNREACHABLE)  # fmt: skip
        else:
            try:
                index = socket.if_nametoindex(route.device)
            except OSError:
                errors.append(Refusal(route, f"{verb} route {_describe(route)}: no device "
                                             f"{route.device}"))  # fmt: skip
                return
            body = route_body(family, target, int(length), route.table, ROUTE_PROTOCOL,
                              oif=index, gateway=route.via)  # fmt: skip
        self._try(errors, route, f"{verb} route {_describe(route)}", self._ipr.add_route, body,
                  verb == "replace")  # fmt: skip

    def _link_names(self) -> dict[int, str]:
        return {link.header["index"]: link.attrs.get("ifname", "") for link in self._ipr.links()}

    def _our_routes(self) -> dict[KernelRoute, bytes]:
        """Our routes in every table, each with what deleting it takes."""
        names = self._link_names()
        found: dict[KernelRoute, bytes] = {}
        for family in _FAMILIES.values():
            for message in self._ipr.routes(family):
                header, attrs = message.header, message.attrs
                if header["proto"] != ROUTE_PROTOCOL:
                    continue
                version = _VERSIONS[family]
                destination = attrs.get("dst") or _ANY[version]
                target = f"{destination}/{header['dst_len']}"
                if header["type"] == RTN_UNREACHABLE:
                    found[KernelRoute(version, target, None, "", message.table, UNREACHABLE)] = (
                        route_body(family, destination, header["dst_len"], message.table,
                                   ROUTE_PROTOCOL, kind=RTN_UNREACHABLE))  # fmt: skip
                    continue
                oif = attrs.get("oif")
                route = KernelRoute(version, target, attrs.get("gateway"),
                                    names.get(oif, str(oif)), message.table)  # fmt: skip
                found[route] = route_body(family, destination, header["dst_len"],
                                          message.table, ROUTE_PROTOCOL, oif=oif)  # fmt: skip
        return found

    def _our_rules(self) -> dict[KernelRule, bytes]:
        found: dict[KernelRule, bytes] = {}
        for family in _FAMILIES.values():
            for message in self._ipr.rules(family):
                attrs = message.attrs
                priority = attrs.get("priority")
                if priority not in RULE_PRIORITIES:
                    continue
                version = _VERSIONS[family]
                destination = attrs.get("dst") or _ANY[version]
                suppress = attrs.get("suppress_prefixlen")
                rule = KernelRule(
                    version, f"{destination}/{message.header['dst_len']}", message.table,
                    priority, attrs.get("ip_proto") or 0, attrs.get("dport_range") or "",
                    -1 if suppress in (None, _NO_SUPPRESS) else suppress,
                )  # fmt: skip
                found[rule] = _rule_message(rule)
        return found

    @staticmethod
    def _try(errors: list[Refusal], item: KernelRoute | KernelRule | None, what: str, call,
             *args, **kwargs) -> None:  # fmt: skip
        """``item``: what the plan wanted that is then not in the kernel (None: a leftover
        that could not be deleted)."""
        try:
            call(*args, **kwargs)
        except NetlinkError as exc:
            errors.append(Refusal(item, f"{what}: {exc.strerror}"))


# What the kernel reports for a rule without suppress_prefixlength.
_NO_SUPPRESS = 0xFFFFFFFF


def _rule_message(rule: KernelRule) -> bytes:
    """What adding (or deleting) the rule takes."""
    target, _, length = rule.target.partition("/")
    suppress = rule.suppress_prefixlength if rule.suppress_prefixlength >= 0 else None
    return rule_body(_FAMILIES[rule.family], rule.table, rule.priority, target, int(length),
                     rule.protocol, rule.ports, suppress)  # fmt: skip


def _describe_rule(rule: KernelRule) -> str:
    parts = [f"to {rule.target}"]
    if rule.protocol:
        parts.append(f"ipproto {rule.protocol}")
    if rule.ports:
        parts.append(f"dport {rule.ports.replace(':', '-')}")
    parts.append(f"lookup {rule.table}")
    if rule.suppress_prefixlength >= 0:
        parts.append(f"suppress_prefixlength {rule.suppress_prefixlength}")
    return " ".join(parts)


def _describe(route: KernelRoute) -> str:
    table = "" if route.table == 254 else f" table {route.table}"
    if route.kind == UNREACHABLE:
        return f"unreachable {route.target}{table}"
    via = f" via {route.via}" if route.via else ""
    return f"{route.target}{via} dev {route.device}{table}"
