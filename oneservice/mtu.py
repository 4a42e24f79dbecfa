"""The tunnel's MTU: one home for what network configs (network/, controller/) and the wire
(node/) both need, so that neither layer reaches into the other."""

# Bytes a tunnelled packet costs: our 16-byte data header and the 16-byte AEAD tag.
TUNNEL_OVERHEAD = 32
# A 1500-byte path minus IPv6 (40) and UDP (8) headers and our overhead. IPv6 is the worst
# case, so one MTU fits both families: 1500 - 48 - 32 = 1420.
DEFAULT_TUNNEL_MTU = 1500 - 40 - 8 - TUNNEL_OVERHEAD
MIN_MTU, MAX_MTU = 1280, 9000  # IPv6 needs 1280; beyond jumbo frames is a typo
