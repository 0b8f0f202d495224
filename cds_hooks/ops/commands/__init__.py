"""The `lumbar-cds` subcommands, one module per command group. Each has `register(subparsers)`, which adds
its parser and sets `func`; `ops/cli.py` lists them. May import anything `ops` may."""
