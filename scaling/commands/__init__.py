"""One module per subcommand: its parser (`add_parser`), then argument handling, one library call and
printing (`run`). Library imports stay inside `run` so that `scaling --help` answers without JAX."""
