"""oneservice: a peer-to-peer virtual network node built around safe full-tunnel routing."""

__version__ = "0.1.0"
