"""The `flf2v` subcommands, one module per group."""
