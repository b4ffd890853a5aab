"""``python -m bench`` is the harness's CLI, the same as ``python -m bench.harness``."""

from __future__ import annotations

from bench.harness import main

raise SystemExit(main())
