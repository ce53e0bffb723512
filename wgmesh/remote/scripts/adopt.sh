# shellcheck shell=sh
# adopt.sh: `wgmesh import` taking over a running node: make sure KEY holds the key the interface runs with
# (moving it there from the config or the interface if needed: never through the output), back up the old
# config without key material (once: no PrivateKey, no PresharedKey, other key-like text redacted), then
# write wgmesh's config.
#
# Values: IF, KEY (IF.key), CONF (IF.conf), BACKUP (where the old config goes), EXPECT (the interface's
#         public key), CONF_TEXT (wgmesh's config for the node, without a PrivateKey), WRITE_CONF (1: write it;
#         0: leave the node's config as it is, for the first apply to replace), REDACTED (what replaces key-like
#         text in the backup).
# Output: `@@wgmesh:adopted kept|config|interface`: where KEY came from.
# Exit: 3 no wg; 4 KEY holds another key; 5 the private key is nowhere to be found.

adopt_tmp="$KEY.wgmesh-tmp.$$"
wgm_have wg || wgm_die "wg is not installed on this node: install wireguard-tools" 3
trap 'rm -f "$adopt_tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 143' TERM
wgm_own_dir "${KEY%/*}"
wgm_writable "${KEY%/*}" || wgm_die "${KEY%/*} is not writable (a read-only file system?): import keeps the key and the config there; nothing was changed" 3

adopt_same() {
  [ -s "$1" ] && [ "$(wg pubkey <"$1" 2>/dev/null)" = "$EXPECT" ]
}

if [ -e "$KEY" ]; then
  adopt_same "$KEY" || wgm_die "$KEY does not hold the key $IF runs with ($EXPECT): move it away and import again" 4
  adopt_from=kept
else
  adopt_from=
  if [ -f "$CONF" ]; then
    # the key the config gives its interface (its last PrivateKey line in [Interface], as wg reads it), into a
    # file on the node
    wgm_conf_key "$CONF" >"$adopt_tmp"
    if adopt_same "$adopt_tmp"; then adopt_from=config; fi
  fi
  if [ -z "$adopt_from" ]; then
    wg show "$IF" private-key >"$adopt_tmp" 2>/dev/null || :
    if adopt_same "$adopt_tmp"; then adopt_from=interface; fi
  fi
  [ -n "$adopt_from" ] || wgm_die "cannot find the private key of $IF (public key $EXPECT) in $CONF or the interface" 5
  chmod 600 "$adopt_tmp"
  ln "$adopt_tmp" "$KEY"
  rm -f "$adopt_tmp"
fi

if [ -f "$CONF" ] && [ ! -e "$BACKUP" ]; then
  # no key material in the backup (F10): no PrivateKey (it is in KEY now), no PresharedKey, and any other
  # key-like text (a key inside a PostUp line) replaced, as import.sh does; PublicKey values stay
  {
    echo "# The config of $IF before wgmesh import; its PrivateKey is now in $KEY, other key-like text redacted"
    awk -v redacted="${REDACTED:-(redacted)}" "$WGM_KEYLESS_AWK"'
      {
        l = $0; sub(/^[ \t]+/, "", l); k = tolower(l); gsub(/[ \t]/, "", k)
        if (k ~ /^(privatekey|presharedkey)=/) next
        print wgm_keyless($0, redacted)
      }' "$CONF"
  } | wgm_write "$BACKUP"
fi
# the running preshared keys stay on the node, in $KEY_DIR/$IF.psk (mode 600): wgmesh's config restores them at
# `wg-quick up` (mesh.yaml says `keep` for those pairs); their values never leave the node
if ip link show dev "$IF" >/dev/null 2>&1; then
  { wg show "$IF" preshared-keys | grep -v '(none)' || :; } | wgm_write "$KEY_DIR/$IF.psk"
fi
if [ "$WRITE_CONF" = 1 ]; then
  printf '%s' "$CONF_TEXT" | wgm_write "$CONF"
fi
wgm_mark adopted "$adopt_from"
