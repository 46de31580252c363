"""The built-in tasks: deterministic, varied, every anomaly with a mask."""

import numpy as np
import pytest
from PIL import Image

from medrecontrast.tasks import get_task
from medrecontrast.tasks.synthetic import SYNTHETIC_GENERATORS, generate_synthetic


def load_all(folder):
    return {p.relative_to(folder).as_posix(): np.asarray(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


@pytest.mark.parametrize("name", list(SYNTHETIC_GENERATORS))
def test_generation_is_deterministic_per_seed(tmp_path, name):
    a = load_all(generate_synthetic(name, tmp_path / "a", 32, 3, 2, 2, seed=0))
    b = load_all(generate_synthetic(name, tmp_path / "b", 32, 3, 2, 2, seed=0))
    c = load_all(generate_synthetic(name, tmp_path / "c", 32, 3, 2, 2, seed=1))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["train/NORMAL/0000.png"], c["train/NORMAL/0000.png"])


@pytest.mark.parametrize("name", list(SYNTHETIC_GENERATORS))
def test_changing_a_count_keeps_the_other_images(tmp_path, name):
    few = load_all(generate_synthetic(name, tmp_path / "few", 32, 2, 1, 2, seed=0))
    more = load_all(generate_synthetic(name, tmp_path / "more", 32, 4, 1, 2, seed=0))
    assert np.array_equal(few["train/NORMAL/0001.png"], more["train/NORMAL/0001.png"])
    assert np.array_equal(few["test/NORMAL/0000.png"], more["test/NORMAL/0000.png"])


@pytest.mark.parametrize("name", list(SYNTHETIC_GENERATORS))
def test_every_anomaly_has_a_nonempty_mask_and_normals_vary(name):
    generator, anomalies = SYNTHETIC_GENERATORS[name]
    normals = [generator(np.random.default_rng(i), 64, None) for i in range(6)]
    assert all(m is None for _, m in normals)
    images = np.stack([im for im, _ in normals]).reshape(6, -1)
    # every pair of normal images differs noticeably (not one picture with noise)
    distances = [np.abs(images[i] - images[j]).mean() for i in range(6) for j in range(i + 1, 6)]
    assert min(distances) > 0.02
    for anomaly in anomalies:
        for seed in range(5):
            image, mask = generator(np.random.default_rng(seed), 64, anomaly)
            assert mask is not None and mask.shape == (64, 64) and mask.any()
            assert image.min() >= 0 and image.max() <= 1


@pytest.mark.parametrize("name", list(SYNTHETIC_GENERATORS))
def test_anomalies_change_the_pixels_under_their_mask(name):
    generator, anomalies = SYNTHETIC_GENERATORS[name]
    for anomaly in anomalies:
        clean, _ = generator(np.random.default_rng(3), 64, None)
        dirty, mask = generator(np.random.default_rng(3), 64, anomaly)
        inside = np.abs(dirty - clean)[mask] if clean.ndim == 2 else np.abs(dirty - clean)[mask].mean(-1)
        assert inside.mean() > 0.05


def test_task_options_and_cache_reuse(isolated_cache):
    task = get_task("synth-oct", size=24, n_train=3, n_test_normal=1, n_test_abnormal=2, seed=5)
    root = task.root()
    assert root.is_relative_to(isolated_cache) and "seed5" in root.name
    stamp = (root / "train" / "NORMAL" / "0000.png").stat().st_mtime_ns
    again = get_task("synth-oct", size=24, n_train=3, n_test_normal=1, n_test_abnormal=2, seed=5).root()
    assert (again / "train" / "NORMAL" / "0000.png").stat().st_mtime_ns == stamp  # reused, not rewritten
    assert Image.open(root / "train" / "NORMAL" / "0000.png").size == (24, 24)


def test_interrupted_generation_leaves_no_folder(tmp_path, monkeypatch):
    import medrecontrast.tasks.synthetic as synthetic

    def broken(rng, size, anomaly):
        raise KeyboardInterrupt

    monkeypatch.setitem(synthetic.SYNTHETIC_GENERATORS, "synth-oct", (broken, ("fluid", "drusen")))
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic("synth-oct", tmp_path / "x", 16, 2, 1, 1, seed=0)
    assert list(tmp_path.iterdir()) == []
