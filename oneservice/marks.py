"""How the kernel state that is ours is marked: one home for the numbers, because routing
writes them, the change monitor recognises our own writes by them, and the crash clean-up and
the one-node-per-host check look for them."""

# Our route protocol number ("proto 165" in `ip route`); unused by the well-known daemons.
ROUTE_PROTOCOL = 165
# allowLanAccess=false: rules send the LAN subnets to this table, which holds the full tunnel.
FULL_TUNNEL_TABLE = 52100
# Every rule we own lies in this range (the crash clean-up removes exactly these).
RULE_PRIORITIES = range(5210, 5220)
