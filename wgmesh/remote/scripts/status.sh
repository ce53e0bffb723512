# shellcheck shell=sh
# status.sh: `wgmesh status` on one node: the node's clock (seconds since the epoch), then the read.
# Values: those of read.sh. Sections: clock, then read.sh's.

wgm_mark clock
date +%s
# wgmesh-include: read.sh
