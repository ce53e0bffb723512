"""What runs on a node: script text out, parsed facts back (pure except ssh.py)."""
