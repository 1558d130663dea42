"""The `surge` command: one module per subcommand, argument parsing and the verdict table."""
