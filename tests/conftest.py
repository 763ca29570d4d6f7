"""Shared fixtures: the synthetic LGG demo dataset (kaggle_3m layout) and its manifest."""

from pathlib import Path

import pytest

from pipelines.demo import make_lgg_demo
from pipelines.manifest import build_kaggle_3m, write_manifest


@pytest.fixture(scope="session")
def lgg_demo_root(tmp_path_factory) -> Path:
    """``kaggle_3m`` root of ``make_lgg_demo`` with defaults: 6 subjects x 12 slices of 256x256.

    Shared by the whole session: read it, do not modify it.
    """
    return make_lgg_demo(tmp_path_factory.mktemp("lgg_demo"))


@pytest.fixture(scope="session")
def lgg_demo_manifest(lgg_demo_root, tmp_path_factory) -> Path:
    """Manifest CSV of ``lgg_demo_root`` (seed 0: 4/1/1 subjects in train/val/test), paths relative to that root."""
    rows = build_kaggle_3m(lgg_demo_root)
    return write_manifest(rows, tmp_path_factory.mktemp("lgg_demo_manifest") / "lgg_demo.csv")
