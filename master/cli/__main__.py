"""`python -m gridless.master.cli` is the `gridless` command (benchmarks/soak.py runs it so)."""

from __future__ import annotations

from gridless.master.cli import main

main()
