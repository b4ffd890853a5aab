"""Where the specification files we test against live: ``../shared/specs`` beside the checkout
(as on developers' machines and in CI), or ``$DOCKYARD_SPECS``."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def specs_dir() -> Path:
    env = os.environ.get("DOCKYARD_SPECS")
    return Path(env) if env else REPO.parent / "shared" / "specs"


def runtime_schema_dir() -> Path:
    return specs_dir() / "runtime-spec-v1.3.0" / "schema"


def image_schema_dir() -> Path:
    return specs_dir() / "image-spec-v1.1.1" / "schema"
