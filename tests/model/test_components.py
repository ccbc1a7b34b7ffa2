"""Loss terms, retrieval, majority filter, adaptive resampling and the gene panel."""

import numpy as np
import pytest
import torch

from napari_scr2st.model.losses import clip_loss, energy_distance, weighted_soft_mse
from napari_scr2st.model.resampling import adaptive_resampling_weights
from napari_scr2st.model.retrieval import majority_filter, retrieve, soft_labels, topk_neighbours


# ----------------------------------------------------------------------------- energy distance
def _energy_numpy(x, y, unbiased):
    def d(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    n, m = len(x), len(y)
    exy = d(x, y).mean()
    if unbiased:
        exx = d(x, x).sum() / (n * (n - 1))
        eyy = d(y, y).sum() / (m * (m - 1))
    else:
        exx, eyy = d(x, x).mean(), d(y, y).mean()
    return 2 * exy - exx - eyy


@pytest.mark.parametrize("unbiased", [True, False])
def test_energy_distance_matches_direct_numpy(unbiased):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5))
    y = rng.normal(loc=0.5, size=(9, 5))
    got = energy_distance(torch.tensor(x), torch.tensor(y), unbiased=unbiased).item()
    assert got == pytest.approx(_energy_numpy(x, y, unbiased), rel=1e-4, abs=1e-5)


def test_energy_distance_zero_for_identical_and_positive_for_shifted():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(64, 8)), dtype=torch.float32)
    assert energy_distance(x, x, unbiased=False).item() == pytest.approx(0.0, abs=1e-4)
    y_same = torch.tensor(rng.normal(size=(64, 8)), dtype=torch.float32)
    shifted = x + 1.0
    same = energy_distance(x, y_same).item()
    diff = energy_distance(x, shifted).item()
    assert abs(same) < 0.1 * diff
    assert diff > 0.5
    # the identical-set U-statistic is slightly negative by construction, close to 0
    assert abs(energy_distance(x, x).item()) < 0.1 * diff


def test_energy_distance_has_finite_gradients_with_duplicates():
    x = torch.zeros(4, 3, requires_grad=True)
    y = torch.ones(4, 3)
    energy_distance(x, y).backward()
    assert torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------- contrastive
def test_clip_loss_matches_manual_and_rewards_alignment():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    zg = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    scale = torch.tensor(10.0)
    logits = scale * z @ zg.t()
    lab = torch.arange(6)
    manual = 0.5 * (
        torch.nn.functional.cross_entropy(logits, lab)
        + torch.nn.functional.cross_entropy(logits.t(), lab)
    )
    assert clip_loss(z, zg, scale).item() == pytest.approx(manual.item(), rel=1e-6)
    eye = torch.eye(6)
    assert clip_loss(eye, eye, torch.tensor(100.0)).item() < 1e-3
    assert clip_loss(eye, eye.roll(1, 0), torch.tensor(100.0)).item() > 10


def test_weighted_soft_mse_is_per_sample():
    pred = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    soft = torch.zeros(2, 2)
    conf = torch.tensor([0.5, 1.0])
    # sample 0: mse 1 * 0.5; sample 1: mse 0 -> mean 0.25
    assert weighted_soft_mse(pred, soft, conf).item() == pytest.approx(0.25)


# ----------------------------------------------------------------------------- retrieval
def test_majority_filter_counts_then_first_seen():
    t = torch.tensor([[0, 1, 1, 0, 2]])
    # types 0 and 1 both occur twice: 0 is seen first (most similar neighbour) and wins for m=1
    assert majority_filter(t, 1).tolist() == [[True, False, False, True, False]]
    assert majority_filter(t, 2).tolist() == [[True, True, True, True, False]]
    t2 = torch.tensor([[2, 1, 1, 0, 1]])
    assert majority_filter(t2, 1).tolist() == [[False, True, True, False, True]]
    # m >= k or m <= 0 keeps all; unknown (-1) is a category of its own
    assert majority_filter(t, 5).all() and majority_filter(t, 0).all()
    t3 = torch.tensor([[-1, -1, 3, 3, 3]])
    assert majority_filter(t3, 1).tolist() == [[False, False, True, True, True]]


def test_soft_labels_and_confidence_by_hand():
    bank = torch.tensor([[0.0, 0.0], [2.0, 4.0], [4.0, 8.0]])
    idx = torch.tensor([[1, 2, 0]])
    kept = torch.tensor([[True, True, False]])
    sim = torch.tensor([[0.8, 0.4, -0.5]])
    soft, conf = soft_labels(bank, idx, kept, sim)
    assert soft.tolist() == [[3.0, 6.0]]
    assert conf.item() == pytest.approx(0.6)


def test_topk_excludes_self_and_is_ordered():
    bank = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    q = bank[:2]
    idx, sims = topk_neighbours(q, bank, 2, exclude=torch.tensor([0, 1]))
    assert idx.tolist() == [[1, 2], [0, 2]]
    assert (sims[:, 0] >= sims[:, 1]).all()
    r = retrieve(
        q,
        bank,
        torch.arange(6.0).view(3, 2),
        torch.tensor([0, 0, 1]),
        k=2,
        m=1,
        exclude=torch.tensor([0, -1]),
    )
    assert r.index[1, 0].item() == 1  # query 1 is not excluded and finds itself
    assert r.kept.tolist() == [[True, False], [True, True]]


# ----------------------------------------------------------------------------- adaptive resampling
def test_ar_weights_upweight_rare_samples():
    rng = np.random.default_rng(0)
    common = rng.normal(0, 1, size=(200, 4))
    rare = rng.normal(0, 1, size=(5, 4))
    rare[:, 2] += 8.0  # rare along one dimension only
    w = adaptive_resampling_weights(np.vstack([common, rare]))
    assert w.sum() == pytest.approx(1.0)
    assert w[200:].min() > 2 * np.median(w[:200])


def test_ar_weights_uniform_data_and_constant_dimension():
    z = np.column_stack([np.linspace(0, 1, 100), np.zeros(100)])
    w = adaptive_resampling_weights(z, n_bins=10, sigma=0.0)
    assert np.allclose(w, 1 / 100)
    with pytest.raises(ValueError):
        adaptive_resampling_weights(np.zeros((0, 3)))


# ----------------------------------------------------------------------------- panel
def test_panel_uses_training_spots_only(section):
    from napari_scr2st.model.panel import select_panel

    a = section.copy()
    train = np.zeros(a.n_obs, dtype=bool)
    train[: a.n_obs // 2] = True
    panel = select_panel(a, train, 40, method="hvg")
    assert len(panel) == 40 and len(set(panel)) == 40
    # wreck the counts of the test spots: the panel must not move
    X = a.X.tolil()
    X[~train, :] = 0
    X[np.flatnonzero(~train)[:, None], np.arange(5)[None, :]] = 1e5
    a.X = X.tocsr()
    assert select_panel(a, train, 40, method="hvg") == panel
    assert select_panel(a, train, 40, method="heg") != panel
    explicit = select_panel(a, train, genes=[a.var_names[3], a.var_names[1]])
    assert explicit == [a.var_names[3], a.var_names[1]]
    with pytest.raises(KeyError):
        select_panel(a, train, genes=["NOT_A_GENE"])
