# shellcheck shell=sh
# import.sh: what `wgmesh import` reads from a running node: its wg-quick config with every secret removed
# on the node, then everything read.sh reads. remote/adopt.py parses it.
#
# Values: CONF (IF.conf), REDACTED (what replaces key-like text), and read.sh's.
# Sections: wgquick (`present` and the filtered config, or `absent`), then read.sh's.
# The filter drops PrivateKey and PresharedKey lines and lines that could pass for markers (`@@`), and
# replaces any other key-like text (except a PublicKey value) by $REDACTED.

wgm_mark wgquick
if [ -f "$CONF" ]; then
  echo present
  awk -v redacted="$REDACTED" "$WGM_KEYLESS_AWK"'
    {
      l = $0; sub(/^[ \t]+/, "", l); k = tolower(l); gsub(/[ \t]/, "", k)
      if (k ~ /^(privatekey|presharedkey)=/) next
      if (substr(l, 1, 2) == "@@") next
      print wgm_keyless($0, redacted)
    }
  ' "$CONF" || :
else
  echo absent
fi
# wgmesh-include: read.sh
