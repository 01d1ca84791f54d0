"""One module per CLI subcommand: NAME, HELP, add_arguments(parser) and run(ctx, args) -> int."""
