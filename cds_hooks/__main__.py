"""`python -m cds_hooks ...` is the `lumbar-cds` command."""

from cds_hooks.ops.cli import main

raise SystemExit(main())
