"""One place for settings: napari.yaml's configurations, the CLI options and the dock defaults
all agree with the dataclasses in napari_scr2st.config."""

from pathlib import Path

import pytest
import yaml

from napari_scr2st.config import SAMPLER_LABELS, SAMPLERS, SamplingSettings, TrainingSettings

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_scr2st" / "napari.yaml"


def _props(section: str) -> dict:
    m = yaml.safe_load(MANIFEST.read_text())
    return m["contributions"]["configurations"][section]["properties"]


def test_manifest_configurations_match_the_dataclasses():
    s, t = SamplingSettings(), TrainingSettings()
    sm = _props("sampling")
    assert sm["budget"]["default"] == s.budget and sm["rounds"]["default"] == s.rounds
    assert (sm["weight_sc"]["default"], sm["weight_type"]["default"], sm["weight_sp"]["default"]) == s.weights
    assert sm["policy_path"]["default"] == s.policy_path
    assert sm["weight_unc"]["default"] == s.w_unc
    tr = _props("training")
    assert (tr["device"]["default"], tr["epochs"]["default"], tr["backbone"]["default"]) == (t.device, t.epochs, t.backbone)


def test_cli_defaults_come_from_the_dataclasses():
    from napari_scr2st.cli import build_parser

    p = build_parser()
    a = p.parse_args(["select"])
    s = SamplingSettings()
    assert (a.budget, a.rounds, a.sampler, a.seed, a.encoder, a.vision_key) == (
        s.budget, s.rounds, s.sampler, s.seed, s.encoder, s.vision_key)
    assert tuple(float(w) for w in a.weights.split(",")) == s.weights
    a = p.parse_args(["train", "--out", "model"])
    t = TrainingSettings()
    from napari_scr2st.model import TrainConfig

    c = TrainConfig()
    for name in ("epochs", "batch_size", "k", "m", "n_genes", "panel_method", "mode", "device", "backbone", "lr",
                 "weight_decay", "alpha", "lambda_soft", "lambda_con", "lambda_energy", "cell_type_key",
                 "embedding_key", "val_fraction", "seed", "crop_px", "image_size"):
        assert getattr(a, name) == getattr(c, name), name
    # the dock's training settings are TrainConfig's defaults
    for name in ("epochs", "batch_size", "k", "m", "n_genes", "mode", "device", "backbone", "hidden_dim", "proj_dim"):
        assert getattr(t, name) == getattr(c, name), name


def test_settings_validate_and_round_trip():
    s = SamplingSettings(budget=" 30 ", rounds=3, sampler="kcenter", w_sp=2)
    assert s.budget == "30" and s.weights == (1.0, 1.0, 2.0)
    assert SamplingSettings.from_dict({**s.to_dict(), "unknown": 1}) == s
    assert s.with_weights((0, 1, 0)).weights == (0.0, 1.0, 0.0)
    for bad in ({"rounds": 0}, {"sampler": "nope"}, {"w_sc": -1}, {"w_type": float("nan")}):
        with pytest.raises(ValueError):
            SamplingSettings(**bad)
    assert set(SAMPLERS) == set(SAMPLER_LABELS)


def test_policy_training_defaults_are_one_recipe():
    """scr2st train-policy, iter_train_policy and the dock's Pre-train share PolicyTrainingSettings."""
    import inspect

    from napari_scr2st.cli import build_parser
    from napari_scr2st.config import PolicyTrainingSettings
    from napari_scr2st.sampling.scrl import iter_train_policy

    r = PolicyTrainingSettings()
    a = build_parser().parse_args(["train-policy"])
    assert (a.episodes, a.imitation_episodes, a.rounds, a.group_size, a.lr) == (
        r.episodes, r.imitation_episodes, r.rounds, r.group_size, r.lr)
    assert tuple(float(b) for b in a.budget_range.split(",")) == r.budget_range
    sig = inspect.signature(iter_train_policy).parameters
    for name in ("episodes", "rounds", "group_size", "budget_range", "lr"):
        assert sig[name].default == getattr(r, name), name
    # the dock asks for a total: a fifth of it imitation (rounded down), the rest REINFORCE
    assert r.split(60) == (12, 48) and r.split(3) == (0, 3) and r.split(1) == (0, 1) and sum(r.split(7)) == 7
    with pytest.raises(ValueError, match="at least one episode"):
        r.split(0)


def test_one_list_of_sampler_names():
    from napari_scr2st.sampling.registry import SAMPLER_NAMES

    assert set(SAMPLERS) == set(SAMPLER_NAMES)


def test_env_flag_is_one_rule_for_every_switch(monkeypatch):
    from napari_scr2st.config import env_flag

    monkeypatch.delenv("SCR2ST_TEST_FLAG", raising=False)
    assert env_flag("SCR2ST_TEST_FLAG", True) is True and env_flag("SCR2ST_TEST_FLAG", False) is False
    for off in ("0", "false", "No", " OFF ", "no"):
        monkeypatch.setenv("SCR2ST_TEST_FLAG", off)
        assert env_flag("SCR2ST_TEST_FLAG", True) is False, off
    for on in ("1", "yes", "true", "on", "2"):
        monkeypatch.setenv("SCR2ST_TEST_FLAG", on)
        assert env_flag("SCR2ST_TEST_FLAG", False) is True, on
    monkeypatch.setenv("SCR2ST_TEST_FLAG", "  ")
    assert env_flag("SCR2ST_TEST_FLAG", True) is True and env_flag("SCR2ST_TEST_FLAG", False) is False
