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
  awk -v redacted="$REDACTED" '
    BEGIN { re = ""; for (i = 0; i < 43; i++) re = re "[A-Za-z0-9+/]"; re = re "=" }
    {
      l = $0; sub(/^[ \t]+/, "", l); k = tolower(l); gsub(/[ \t]/, "", k)
      if (k ~ /^(privatekey|presharedkey)=/) next
      if (substr(l, 1, 2) == "@@") next
      if (k !~ /^publickey=/) gsub(re, redacted)
      print
    }
  ' "$CONF" || :
else
  echo absent
fi
# wgmesh-include: read.sh
