"""End-to-end tests against `wgmesh lab` hosts (a package, so module names may repeat those in tests/)."""
