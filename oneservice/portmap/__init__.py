"""Asking the router in front of an uplink for a port mapping (PCP, NAT-PMP, UPnP IGD), so
that peers behind any NAT can reach this node directly: protocols.py and ssdp.py are the
pure wire formats, mapper.py the I/O that keeps one mapping per uplink."""
