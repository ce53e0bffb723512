"""wgmesh: declarative, reviewable WireGuard full meshes."""

__version__ = "0.1.0"
