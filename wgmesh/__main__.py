from wgmesh.cli.entry import run

run()
