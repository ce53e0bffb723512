#!/usr/bin/env bash
# Installs what wgmesh, its demo and its tests need on a Debian/Ubuntu machine (as root):
# the Debian packages for the lab hosts, and a venv in .venv with wgmesh and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(wireguard-tools wireguard-go openssh-server iproute2 iputils-ping sudo util-linux procps python3-venv make shellcheck busybox iptables jq graphviz)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]}; run as root or: apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
echo "Ready: .venv/bin/wgmesh $(.venv/bin/wgmesh --version | cut -d' ' -f2)"
