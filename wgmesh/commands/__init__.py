"""The shell: (options, Environment, transport factory) -> ExitStatus, one module per command family."""
