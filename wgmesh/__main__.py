from wgmesh.cli.app import run

run()
