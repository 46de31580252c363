import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDRECONTRAST_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test run caches into its own folder, never into the user's ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "medrecontrast-cache"
    monkeypatch.setenv("MEDRECONTRAST_CACHE", str(cache))
    monkeypatch.delenv("MEDRECONTRAST_DATA", raising=False)
    return cache


def shared(relative: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real sample data not available: {path} (see ../shared/data/README.md)")
    return path
