"""Runs the node's kernel-facing netlink code (routing/linux.py, binder/linux.py) inside a
test namespace: reads one JSON list of steps on stdin, prints one JSON result per step.

Steps: {"apply": {"routes": [...], "rules": [...]}} (KernelRoute/KernelRule fields as
lists), {"devices": [addresses]}, {"interfaces": true}, {"remove_all": true}.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from oneservice.binder.linux import enumerate_interfaces
from oneservice.routing.linux import LinuxRoutes
from oneservice.routing.planner import KernelRoute, KernelRule


def main() -> None:
    routes = LinuxRoutes()
    for step in json.load(sys.stdin):
        if "apply" in step:
            plan = step["apply"]
            refusals = routes.apply([KernelRoute(*r) for r in plan["routes"]],
                                    [KernelRule(*r) for r in plan["rules"]])  # fmt: skip
            result = [refusal.message for refusal in refusals]
        elif "devices" in step:
            result = routes.route_devices(step["devices"])
        elif "interfaces" in step:
            result = [dataclasses.asdict(i) for i in enumerate_interfaces()]
        else:
            result = routes.remove_all()
        print(json.dumps(result), flush=True)
    routes.close()


if __name__ == "__main__":
    main()
