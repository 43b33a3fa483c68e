"""One module per workflow stage; each exposes `main(argv=None)` for the `tvts` CLI."""
