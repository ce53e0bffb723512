#!/usr/bin/env bash
# The demo: four lab hosts (aws, azure, gcp, aliyun behind NAT) on this machine, then
# plan -> apply -> check -> plan again, which must say "No changes".
set -euo pipefail
cd "$(dirname "$0")/.."
W="$PWD/.venv/bin/wgmesh"
if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold= plain=; fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }

# azure's endpoint is a DNS name (the hosts resolve it), aliyun is behind NAT: plan must show neither.
# The hosts are like cloud images: root login refused with cloud-init's banner, a sudo user in mesh.yaml's
# ssh.user (wgmesh runs its node commands through sudo -n), IP forwarding off.
step wgmesh lab up --nodes 4 --dir lab --dns azure
"$W" lab up --nodes 4 --dir lab --dns azure
cd lab
step wgmesh validate
"$W" validate
step wgmesh plan
"$W" plan
step wgmesh apply --auto-approve
"$W" apply --auto-approve
step wgmesh check
"$W" check
step wgmesh plan --detailed-exitcode
"$W" plan --detailed-exitcode
echo
echo "The lab is still running: cd lab and try wgmesh status, edit mesh.yaml, wgmesh plan ..."
echo "Remove it with: make clean-lab   (or: .venv/bin/wgmesh lab down --dir lab)"
