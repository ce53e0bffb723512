# shellcheck shell=sh
# rotate.sh: replace the node's private key with a new one, under the apply lock, if the key file still
# holds the key mesh.yaml records. Neither key leaves the node; the new public key is printed.
#
# Values: KEY (IF.key), EXPECT (the public key mesh.yaml records), WGM_LOCK, WGM_LOCK_TIMEOUT.
# Output: `@@wgmesh:key rotated PUBLIC_KEY`.
# Exit: 3 no wg, no key file or not a key; 4 the key is not the one mesh.yaml records; 75/69 (wgm_lock).

rotate_tmp="$KEY.wgmesh-tmp.$$"
wgm_have wg || wgm_die "wg is not installed on this node: install wireguard-tools" 3
trap 'rm -f "$rotate_tmp"' EXIT
trap 'exit 129' HUP  # a signal ends the script through its EXIT trap: no key file left half-made
trap 'exit 143' TERM
wgm_lock
wgm_own_dir "${KEY%/*}"
wgm_stale_keys "$KEY"
[ -f "$KEY" ] || wgm_die "no key file $KEY on the node: enroll it first" 3
if ! rotate_current=$(wg pubkey <"$KEY" 2>/dev/null); then
  wgm_die "$KEY does not hold a WireGuard private key" 3
fi
if [ "$rotate_current" != "$EXPECT" ]; then
  wgm_die "the key in $KEY has public key $rotate_current, not the $EXPECT that mesh.yaml records: run wgmesh enroll to record it first" 4
fi
rm -f "$rotate_tmp"
wg genkey >"$rotate_tmp"
sync "$rotate_tmp" 2>/dev/null || :  # on disk before it replaces the old key (XFS, a crash: no empty key file)
rotate_public=$(wg pubkey <"$rotate_tmp")
mv -f "$rotate_tmp" "$KEY"
wgm_mark key rotated "$rotate_public"
