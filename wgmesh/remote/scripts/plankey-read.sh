# shellcheck shell=sh
# plankey-read.sh: the guard of the read script that `wgmesh plan-key` installs on a node as
# $KEY_DIR/wgmesh-read-$IF.sh (remote/plankey.py puts it together: a header with its version, the values of
# read.sh, lib.sh, this file, read.sh). It is the forced command of the read-only plan key, so it runs whatever
# the key's holder asks for: it serves exactly two of wgmesh's own scripts, read.sh and status.sh (status is
# the clock, then the read), and refuses anything else with exit 1 before it prints a byte on stdout.
#
# Values: those of read.sh (IF, KEY_DIR, KEY, CONF, HOSTS: the endpoint names known at install time),
#         PLANREAD_VERSION (the version in the header).
# Reads: SSH_ORIGINAL_COMMAND (what the client asked sshd to run: wgmesh asks for `/bin/sh -s` or
#        `sudo -n /bin/sh -s`; sudo keeps the variable through the sudoers drop-in's env_keep), and the first
#        256 bytes of stdin: wgmesh's transport sends `echo '@@wgmesh:ready'`, then the script, whose first line
#        is `# wgmesh NAME.sh`. Nothing else of stdin is read, nothing of it is run.
# Prints: `@@wgmesh:ready` (what the transport waits for), `@@wgmesh:served VERSION IF` (remote/read.py refuses
#         the output of a script from another wgmesh version, or of another interface's), for status the clock, then read.sh's sections.

planread_refuse() {
  printf 'wgmesh read-only plan key: %s; use the admin key for anything else\n' "$1" >&2
  exit 1
}

case ${SSH_ORIGINAL_COMMAND-} in
'/bin/sh -s' | 'sudo -n /bin/sh -s') ;;
'') planread_refuse "this key opens no shell and no session: it runs wgmesh's read and nothing else" ;;
*) planread_refuse "this key does not run the command asked for: it runs wgmesh's read and nothing else" ;;
esac

if wgm_have timeout; then
  planread_head=$(timeout 10 head -c 256 | sed -n 2p)
else
  planread_head=$(head -c 256 | sed -n 2p)
fi
case $planread_head in
'# wgmesh read.sh') planread_what='read' ;;
'# wgmesh status.sh') planread_what='status' ;;
*)
  planread_name=${planread_head#\# wgmesh }
  case $planread_name in
  '' | *[!a-z0-9_.-]* | "$planread_head") planread_name='that script' ;;
  esac
  planread_refuse "this key cannot run $planread_name: it runs wgmesh's read.sh and status.sh, nothing else"
  ;;
esac

echo '@@wgmesh:ready'
wgm_mark served "$PLANREAD_VERSION" "$IF"
if [ "$planread_what" = status ]; then
  wgm_mark clock
  date +%s
fi

# The endpoint names in the node's own config join those known at install time (the plan compares each
# declared name with the address the node resolves it to).
if [ -r "$CONF" ]; then
  planread_names=$(sed -n 's/^[[:space:]]*Endpoint[[:space:]]*=[[:space:]]*\([A-Za-z0-9._-]*[A-Za-z_-][A-Za-z0-9._-]*\):[0-9][0-9]*[[:space:]]*$/\1/p' "$CONF" | head -n 256)
  HOSTS=$(printf '%s\n%s\n' "$HOSTS" "$planread_names" | sed '/^$/d' | sort -u)
fi
