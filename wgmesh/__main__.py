from wgmesh.cli import main

main()
