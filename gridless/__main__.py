"""`python -m gridless` is the `gridless` command."""

from __future__ import annotations

from gridless.master.cli import main

main()
