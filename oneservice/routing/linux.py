"""Make the kernel's routes and rules match a routing plan (Linux, pyroute2).

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
from ..netlink import IPRoute, NetlinkError
from .planner import UNREACHABLE, KernelRoute, KernelRule, Refusal

log = logging.getLogger(__name__)

_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
_VERSIONS = {socket.AF_INET: 4, socket.AF_INET6: 6}
_ANY = {4: "0.0.0.0", 6: "::"}
RTN_UNREACHABLE = 7  # rtm_type of an unreachable route (linux/rtnetlink.h)


class LinuxRoutes:
    """Use from one worker thread only: pyroute2's synchronous IPRoute cannot be made, nor
    run, on a thread whose event loop is running."""

    def __init__(self) -> None:
        self._socket: IPRoute | None = None

    @property
    def _ipr(self) -> IPRoute:
        if self._socket is None:
            self._socket = IPRoute()
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
                self._try(errors, None, f"delete route {_describe(route)}", self._ipr.route,
                          "del", **message)  # fmt: skip
        for route in sorted(wanted - set(present)):
            if (route.family, route.target, route.table) not in slots:
                self._add_route(route, errors)
        # Rules: the new ones first, then the old ones go. A split that changes (its ports, or
        # "only" for "except") never leaves a moment in which the listed traffic goes direct.
        wanted_rules = set(rules)
        present_rules = self._our_rules()
        for rule in sorted(wanted_rules - set(present_rules)):
            self._try(errors, rule, f"add rule {_describe_rule(rule)}", self._ipr.rule, "add",
                      **_rule_message(rule))  # fmt: skip
        for rule, message in present_rules.items():
            if rule not in wanted_rules:
                self._try(errors, None, f"delete rule {_describe_rule(rule)}", self._ipr.rule,
                          "del", **message)  # fmt: skip
        return errors

    def route_devices(self, addresses: Iterable[str]) -> dict[str, str | None]:
        """Where the kernel would send a packet to each address (as an application's would go:
        main routing policy, no bound device): the device's name, or None if unreachable."""
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in self._ipr.get_links()}
        devices: dict[str, str | None] = {}
        for address in addresses:
            try:
                [answer] = self._ipr.route("get", dst=address)[:1]
            except (NetlinkError, ValueError):
                devices[address] = None  # unreachable (ours, when we block a family)
                continue
            index = answer.get_attr("RTA_OIF")
            devices[address] = names.get(index) if answer["type"] == 1 else None  # RTN_UNICAST
        return devices

    def remove_all(self) -> int:
        """Delete every route and rule of ours (a crash's leftovers, or at a clean stop)."""
        errors: list[Refusal] = []
        present, rules = self._our_routes(), self._our_rules()
        for route, message in present.items():
            self._try(errors, None, f"delete route {_describe(route)}", self._ipr.route, "del",
                      **message)  # fmt: skip
        for rule, message in rules.items():
            self._try(errors, None, f"delete rule {_describe_rule(rule)}", self._ipr.rule, "del",
                      **message)  # fmt: skip
        for error in errors:
            log.warning("%s", error.message)
        return len(present) + len(rules) - len(errors)

    def _add_route(self, route: KernelRoute, errors: list[Refusal], verb: str = "add") -> None:
        if route.kind == UNREACHABLE:
            self._try(errors, route, f"{verb} route {_describe(route)}", self._ipr.route, verb,
                      family=_FAMILIES[route.family], dst=route.target, type=UNREACHABLE,
                      proto=ROUTE_PROTOCOL, table=route.table)  # fmt: skip
            return
        index = self._ipr.link_lookup(ifname=route.device)
        if not index:
            errors.append(Refusal(route, f"{verb} route {_describe(route)}: no device "
                                         f"{route.device}"))  # fmt: skip
            return
        arguments = {"family": _FAMILIES[route.family], "dst": route.target,
                     "oif": index[0], "proto": ROUTE_PROTOCOL, "table": route.table}  # fmt: skip
        if route.via is not None:
            arguments["gateway"] = route.via
        self._try(errors, route, f"{verb} route {_describe(route)}", self._ipr.route, verb,
                  **arguments)  # fmt: skip

    def _our_routes(self) -> dict[KernelRoute, dict]:
        """Our routes in every table, each with what deleting it takes."""
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in self._ipr.get_links()}
        found: dict[KernelRoute, dict] = {}
        for family in _FAMILIES.values():
            for message in self._ipr.get_routes(family=family):
                if message["proto"] != ROUTE_PROTOCOL:
                    continue
                version = _VERSIONS[family]
                destination = message.get_attr("RTA_DST") or _ANY[version]
                table = message.get_attr("RTA_TABLE") or message["table"]
                target = f"{destination}/{message['dst_len']}"
                delete = {"family": family, "dst": destination, "dst_len": message["dst_len"],
                          "table": table, "proto": ROUTE_PROTOCOL}  # fmt: skip
                if message["type"] == RTN_UNREACHABLE:
                    found[KernelRoute(version, target, None, "", table, UNREACHABLE)] = {
                        **delete, "type": UNREACHABLE}  # fmt: skip
                    continue
                oif = message.get_attr("RTA_OIF")
                route = KernelRoute(version, target, message.get_attr("RTA_GATEWAY"),
                                    names.get(oif, str(oif)), table)  # fmt: skip
                found[route] = {**delete, "oif": oif}
        return found

    def _our_rules(self) -> dict[KernelRule, dict]:
        found: dict[KernelRule, dict] = {}
        for family in _FAMILIES.values():
            for message in self._ipr.get_rules(family=family):
                priority = message.get_attr("FRA_PRIORITY")
                if priority not in RULE_PRIORITIES:
                    continue
                version = _VERSIONS[family]
                destination = message.get_attr("FRA_DST") or _ANY[version]
                table = message.get_attr("FRA_TABLE") or message["table"]
                suppress = message.get_attr("FRA_SUPPRESS_PREFIXLEN")
                rule = KernelRule(
                    version, f"{destination}/{message['dst_len']}", table, priority,
                    message.get_attr("FRA_IP_PROTO") or 0,
                    message.get_attr("FRA_DPORT_RANGE") or "",
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
            errors.append(Refusal(item, f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}"))


# What the kernel reports for a rule without suppress_prefixlength.
_NO_SUPPRESS = 0xFFFFFFFF


def _rule_message(rule: KernelRule) -> dict:
    """What adding (or deleting) the rule takes."""
    target, _, length = rule.target.partition("/")
    message: dict = {"family": _FAMILIES[rule.family], "table": rule.table,
                     "priority": rule.priority}  # fmt: skip
    if int(length):
        message.update(dst=target, dst_len=int(length))
    if rule.protocol:
        message["ip_proto"] = rule.protocol
    if rule.ports:
        message["dport_range"] = rule.ports
    if rule.suppress_prefixlength >= 0:
        message["suppress_prefixlen"] = rule.suppress_prefixlength
    return message


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
