# shellcheck shell=sh
# plankey.sh: install or remove the read-only plan key on a node (`wgmesh plan-key`), as root, through the
# admin key's normal transport. remote/plankey.py builds it and parses what it prints.
#
# Install, in this order, so that the key never works before its script does:
#   1. $SCRIPT ($KEY_DIR/wgmesh-read-$IF.sh): READ_HEAD, a line `# authorized_keys: PATH`, READ_BODY; root's,
#      mode 0755, written atomically, in a folder only root may write (checked);
#   2. when the login user is not root: $SUDOERS (/etc/sudoers.d/wgmesh-plan-IF), validated with `visudo -cf`
#      before it is moved into place, letting exactly that user run exactly $SCRIPT, without arguments, as root;
#   3. the login user's authorized_keys: the `wgmesh-plan-key` line that runs $SCRIPT (this interface's) replaced
#      by `restrict,command="[sudo -n ]$SCRIPT" KEY_TYPE KEY_DATA wgmesh-plan-key` (atomic, owner and mode kept:
#      sshd ignores a file the user cannot read or others can write). Other interfaces' lines stay: each mesh on
#      a node has its plan key, and a key that is another interface's plan key already is refused (sshd runs the
#      first line of a key: one key cannot serve two scripts).
# Remove, in the reverse order: the authorized_keys line, the sudoers file (if it is ours), the script.
# $LEGACY_SUDOERS, the one file of every interface before plan keys were per interface, goes when it allows
# $SCRIPT.
#
# The login user is the one wgmesh logs in as: SUDO_USER under `sudo -n /bin/sh -s`, else the current user.
# Values: ACTION (install | remove), IF, KEY_DIR, SCRIPT, SUDOERS, LEGACY_SUDOERS, AUTHORIZED_KEYS (the login user's file, ''
#         for ~/.ssh/authorized_keys, or on remove the file the installed script names; relative: to the home),
#         KEY_TYPE and KEY_DATA (the plan key, on install), READ_HEAD and READ_BODY (the script, on install).
# Output: `@@wgmesh:plankey installed|removed USER root|sudo AUTHORIZED_KEYS`.
# Exit: 3 on a refusal, with the reason and the fix on stderr; nothing was changed then.

plankey_tag=wgmesh-plan-key
plankey_header='# wgmesh plan-key'

[ "$(id -u)" = 0 ] || wgm_die "plan-key must run as root on the node (the user is $(id -un): is ssh.sudo false?)" 3
plankey_user=${SUDO_USER:-$(id -un)}

plankey_home() {
  plankey_found=$(awk -F: -v u="$1" '$1 == u { print $6; exit }' /etc/passwd 2>/dev/null) || :
  if [ -z "$plankey_found" ] && wgm_have getent; then # a user from LDAP or the like
    plankey_found=$(getent passwd "$1" 2>/dev/null | head -n 1 | cut -d: -f6) || :
  fi
  printf '%s\n' "$plankey_found"
}

plankey_keys=$AUTHORIZED_KEYS
if [ -z "$plankey_keys" ] && [ "$ACTION" = remove ] && [ -f "$SCRIPT" ]; then
  plankey_keys=$(sed -n 's/^# authorized_keys: \(\/.*\)$/\1/p' "$SCRIPT" | head -n 1)
fi
if [ -z "$plankey_keys" ] || [ "${plankey_keys#/}" = "$plankey_keys" ]; then
  plankey_dir=$(plankey_home "$plankey_user")
  [ -n "$plankey_dir" ] || wgm_die "cannot find the home folder of $plankey_user: give --authorized-keys PATH" 3
  plankey_keys="$plankey_dir/${plankey_keys:-.ssh/authorized_keys}"
fi
if [ -L "$plankey_keys" ]; then
  plankey_keys=$(readlink -f "$plankey_keys")
fi

# plankey_lines MODE FILE: this interface's plan key line is a `wgmesh-plan-key` line whose forced command runs
# $SCRIPT. MODE drop: print FILE without it; mine: exit 0 if FILE has it; other: exit 0 if another interface's
# plan key line holds KEY_DATA.
plankey_lines() {
  awk -v mode="$1" -v tag="$plankey_tag" -v script="$SCRIPT" -v key="${KEY_DATA:-}" '
    { mine = ($NF == tag && index($0, script "\"") > 0) }
    mode == "drop" { if (!mine) print; next }
    mode == "mine" { if (mine) found = 1; next }
    mode == "other" && !mine && $NF == tag { for (i = 1; i <= NF; i++) if ($i == key) found = 1 }
    END { if (mode != "drop") exit !found }' "$2"
}

# plankey_edit FILE [LINE]: FILE without this interface's `wgmesh-plan-key` line, then LINE; atomic, owner and
# mode kept.
plankey_edit() {
  plankey_tmp="${1%/*}/.${1##*/}.wgmesh-tmp.$$"
  if [ -f "$1" ]; then
    plankey_owner=$(stat -c '%u:%g' "$1")
    plankey_mode=$(stat -c '%a' "$1")
  else
    plankey_owner="$(id -u "$plankey_user"):$(id -g "$plankey_user")"
    plankey_mode=600
  fi
  if {
    if [ -f "$1" ]; then plankey_lines drop "$1"; fi
    if [ "$#" -gt 1 ]; then printf '%s\n' "$2"; fi
  } >"$plankey_tmp" && chown "$plankey_owner" "$plankey_tmp" && chmod "$plankey_mode" "$plankey_tmp" &&
    mv -f "$plankey_tmp" "$1"; then
    return 0
  fi
  rm -f "$plankey_tmp"
  wgm_die "cannot write $1" 3
}

# plankey_put FILE MODE: stdin to FILE, root's, with MODE, atomically.
plankey_put() {
  plankey_tmp="$1.wgmesh-tmp.$$" # a name with a '.': sudo never reads such a file in sudoers.d
  if cat >"$plankey_tmp" && chown 0:0 "$plankey_tmp" && chmod "$2" "$plankey_tmp" && mv -f "$plankey_tmp" "$1"; then
    return 0
  fi
  rm -f "$plankey_tmp"
  wgm_die "cannot write $1" 3
}

plankey_ours() { # FILE: a sudoers file wgmesh wrote
  [ -f "$1" ] && head -n 1 "$1" | grep -q "^$plankey_header"
}

# $SCRIPT as a sudoers file has it: `\` before \ , : = and space
plankey_cmnd=$(printf '%s' "$SCRIPT" | sed 's/[\\,:= ]/\\&/g')

plankey_legacy() { # the one sudoers file of every interface, written for this interface's script
  if plankey_ours "$LEGACY_SUDOERS" && grep -qF -e "$SCRIPT" -e "$plankey_cmnd" "$LEGACY_SUDOERS"; then
    rm -f "$LEGACY_SUDOERS"
  fi
}

if [ "$ACTION" = remove ]; then
  if [ -f "$plankey_keys" ] && plankey_lines mine "$plankey_keys"; then
    plankey_edit "$plankey_keys"
  fi
  if plankey_ours "$SUDOERS"; then rm -f "$SUDOERS"; fi
  plankey_legacy
  rm -f "$SCRIPT"
  wgm_mark plankey removed "$plankey_user" - "$plankey_keys"
  exit 0
fi

# ------------------------------------------------------------------------------------------ install: checks

if [ -f "$plankey_keys" ] && awk -v tag="$plankey_tag" -v key="$KEY_DATA" \
  '$NF != tag { for (i = 1; i <= NF; i++) if ($i == key) found = 1 } END { exit !found }' "$plankey_keys"; then
  wgm_die "this key already logs in as $plankey_user without restriction ($plankey_keys): a plan key must be a key of its own (ssh-keygen -t ed25519 -f wgmesh-plan-key)" 3
fi
if [ -f "$plankey_keys" ] && plankey_lines other "$plankey_keys"; then
  wgm_die "this key is already the plan key of another interface's mesh on this node ($plankey_keys): one key serves one mesh (sshd runs the first line of a key); make another key for this one (ssh-keygen -t ed25519 -f wgmesh-plan-key-$IF)" 3
fi
mkdir -p "$KEY_DIR"
if plankey_folder=$(wgm_unsafe_dir "$KEY_DIR"); then
  wgm_die "$plankey_folder must be root's and writable by root only: the plan key runs a script from it as root (chown root: $plankey_folder; chmod go-w $plankey_folder)" 3
fi
plankey_forced=$SCRIPT
plankey_via=root
if [ "$plankey_user" != root ]; then
  plankey_via=sudo
  plankey_forced="sudo -n $SCRIPT"
  wgm_have sudo || wgm_die "sudo is not installed: the plan key of $plankey_user runs the read through sudo" 3
  wgm_have visudo || wgm_die "visudo is not installed: wgmesh validates its sudoers file with it (install sudo)" 3
  grep -Eq '^[#@]includedir[[:space:]]+/etc/sudoers.d/?[[:space:]]*$' /etc/sudoers 2>/dev/null ||
    wgm_die "/etc/sudoers does not include /etc/sudoers.d: add the line @includedir /etc/sudoers.d" 3
fi
# every folder written below, before anything is (a read-only /etc half-way would leave the read script alone)
plankey_sshdir=${plankey_keys%/*}
for plankey_folder in "$KEY_DIR" "$([ "$plankey_via" = sudo ] && printf '%s' "${SUDOERS%/*}")" "$plankey_sshdir"; do
  if [ -n "$plankey_folder" ] && [ -d "$plankey_folder" ] && ! wgm_writable "$plankey_folder"; then
    wgm_die "$plankey_folder is not writable (a read-only file system?): the plan key needs it; nothing was installed" 3
  fi
done

# ------------------------------------------------------------------------------------------ install

printf '%s\n# authorized_keys: %s\n%s' "$READ_HEAD" "$plankey_keys" "$READ_BODY" | plankey_put "$SCRIPT" 755

if [ "$plankey_via" = sudo ]; then
  plankey_draft="$SUDOERS.wgmesh-check.$$"
  {
    printf "%s: the read-only plan key of %s runs wgmesh's read script as root, and nothing else.\n" \
      "$plankey_header" "$plankey_user"
    printf 'Defaults!%s !requiretty, env_keep += "SSH_ORIGINAL_COMMAND"\n' "$plankey_cmnd"
    printf '%s ALL=(root) NOPASSWD: %s ""\n' "$plankey_user" "$plankey_cmnd"
  } >"$plankey_draft"
  if ! plankey_check=$(visudo -cf "$plankey_draft" 2>&1); then
    rm -f "$plankey_draft"
    wgm_die "visudo rejects the sudoers file wgmesh wrote for $plankey_user: $(printf '%s' "$plankey_check" | tail -n 1)" 3
  fi
  plankey_put "$SUDOERS" 440 <"$plankey_draft"
  rm -f "$plankey_draft"
elif plankey_ours "$SUDOERS"; then
  rm -f "$SUDOERS" # a plan key of another login user before: not needed by root
fi
plankey_legacy

if [ ! -d "$plankey_sshdir" ]; then
  mkdir -p "$plankey_sshdir"
  chown "$(id -u "$plankey_user"):$(id -g "$plankey_user")" "$plankey_sshdir"
  chmod 700 "$plankey_sshdir"
fi
plankey_edit "$plankey_keys" "restrict,command=\"$plankey_forced\" $KEY_TYPE $KEY_DATA $plankey_tag"
wgm_mark plankey installed "$plankey_user" "$plankey_via" "$plankey_keys"
