# shellcheck shell=sh
# enroll.sh: create the node's private key if it has none; print its public key. The private key is made
# here and never leaves the node (nothing but the public key and the file's mode is printed).
#
# Values: KEY_DIR (/etc/wireguard), KEY (IF.key in it).
# Output: `@@wgmesh:key created|existing PUBLIC_KEY MODE`, then `@@wgmesh:running PUBLIC_KEY` when IF runs with
# another key.
# Exit: 3 when wg is missing or KEY is not a key.

enroll_tmp="$KEY.wgmesh-tmp.$$"
wgm_have wg || wgm_die "wg is not installed on this node: install wireguard-tools" 3
trap 'rm -f "$enroll_tmp"' EXIT
trap 'exit 129' HUP  # a signal ends the script through its EXIT trap: no key file left half-made
trap 'exit 143' TERM
mkdir -p "$KEY_DIR"
wgm_own_dir "$KEY_DIR"
wgm_stale_keys "$KEY"
enroll_status=existing
if [ ! -e "$KEY" ]; then
  wg genkey >"$enroll_tmp"
  sync "$enroll_tmp" 2>/dev/null || :  # on disk before its name is (a crash must not leave an empty key file)
  # ln fails if the key appeared in the meantime: an existing key is never replaced
  if ln "$enroll_tmp" "$KEY" 2>/dev/null; then enroll_status=created; fi
  rm -f "$enroll_tmp"
fi
if ! enroll_public=$(wg pubkey <"$KEY" 2>/dev/null); then
  wgm_die "$KEY exists but does not hold a WireGuard private key: move it away and enroll again" 3
fi
enroll_mode=$(stat -c %a "$KEY" 2>/dev/null || echo unknown)
wgm_mark key "$enroll_status" "$enroll_public" "$enroll_mode"
# an interface running with another key (a config made by hand): the first apply would switch it to this one
if enroll_running=$(wg show "$IF" public-key 2>/dev/null) && [ -n "$enroll_running" ] &&
  [ "$enroll_running" != "$enroll_public" ]; then
  wgm_mark running "$enroll_running"
fi
