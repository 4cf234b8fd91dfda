"""swisscheese: layered defences against jailbreaks, and the red team that finds their holes."""

__version__ = "0.1.0"
