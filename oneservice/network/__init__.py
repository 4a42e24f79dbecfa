"""Virtual networks: their configuration (members, addresses, routes) and where it comes from."""
