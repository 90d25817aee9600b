"""`python -m proxy` is the `relaylog` command."""

from proxy.cli import main

raise SystemExit(main())
