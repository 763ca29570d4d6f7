"""Shared fixtures: the synthetic LGG (kaggle_3m layout) and OASIS (keras_png_slices_data layout) demo datasets and their
manifests; an exported bundle's ``scripts`` package made importable in this process."""

import sys
from pathlib import Path

import pytest

from pipelines.data.demo import make_lgg_demo, make_oasis_demo
from pipelines.data.lgg import build_kaggle_3m
from pipelines.data.manifest import write_manifest
from pipelines.data.oasis import build_oasis


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


@pytest.fixture(scope="session")
def oasis_demo_root(tmp_path_factory) -> Path:
    """``keras_png_slices_data`` root of ``make_oasis_demo`` with defaults: 3/1/1 cases x 8 slices of 256x256.

    Shared by the whole session: read it, do not modify it.
    """
    return make_oasis_demo(tmp_path_factory.mktemp("oasis_demo"))


@pytest.fixture(scope="session")
def oasis_demo_manifest(oasis_demo_root, tmp_path_factory) -> Path:
    """Manifest CSV of ``oasis_demo_root`` (cases 001-003 train, 004 val, 005 test), paths relative to that root."""
    return write_manifest(build_oasis(oasis_demo_root), tmp_path_factory.mktemp("oasis_demo_manifest") / "oasis_demo.csv")


@pytest.fixture
def import_scripts_from(monkeypatch):
    """``import_scripts_from(folder)``: ``import scripts`` finds ``<folder>/scripts`` (an exported bundle's), as for
    ``python -m monai.bundle`` run in that folder. Undone after the test, with the excepthook that importing it installs."""
    def forget() -> None:
        for name in [name for name in sys.modules if name.partition(".")[0] == "scripts"]:
            del sys.modules[name]

    def import_from(folder: Path) -> None:
        forget()
        monkeypatch.syspath_prepend(str(folder))

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    yield import_from
    forget()
