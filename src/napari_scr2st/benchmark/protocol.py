"""The paired label-efficiency protocol: how well does a model trained on the spots a sampler
chose predict a COMMON test set, budget by budget, seed by seed.

Two protocols (:func:`iter_label_efficiency`):

- ``within``: per section, the fixed random 20 % test set of
  :func:`~napari_scr2st.benchmark.within_slide.test_split` is excluded from the pool (never
  selectable); each sampler chooses ``budget`` of the remaining spots in ``rounds`` rounds of a
  simulated acquisition on that section; the downstream model trains on the chosen spots of that
  section only and is scored on the test set.
- ``cross``: the training sections of ``cross_split`` (``{test section: [training sections]}``;
  default: for every section, all sections of OTHER patients, ``obs["patient"]``) are pooled;
  each sampler chooses ``budget`` of the pooled spots (one budget over the pool); the downstream
  model trains on the chosen spots and is scored on the whole held-out section. A test section
  sharing a patient with one of its training sections is refused.

Pairing: for a test section and a seed every sampler gets the same test set, the same gene
panel, the same downstream model seed and the same SCRL policy; the samplers are seeded with the
seed. The gene panel (``n_genes`` most expressed, :func:`~napari_scr2st.model.panel.select_panel`)
is chosen ONCE per test section on all its selectable spots, so every sampler and budget is
scored on the same genes (a protocol choice: the genes to predict are fixed before sampling).
At budget 1.0 every sampler selects all selectable spots: that point is computed once per test
section and seed and reported for every sampler (identical rows).

SCRL: each seed trains a fresh policy (:func:`~napari_scr2st.sampling.scrl.iter_train_policy`,
``imitation_episodes`` greedy-imitation then ``episodes`` REINFORCE episodes, policy seed = the
seed) on the sections other than the test section. ``within`` with a single section has no
other section: the policy is then trained on that section's non-test spots (the test spots are
removed from its environment). In ``cross`` the policy is trained on the training sections it
then selects from (the only sections other than the test section); their full expression is
seen in training. These notes are listed in ``frame.attrs["notes"]`` and in the summary.

Downstream models (``downstream``): ``scr2net``: :class:`~napari_scr2st.model.SCR2NetPredictor`
on the frozen embedding with the within-slide spatial correction (``spatial_folds`` = ``folds``);
``ridge``: ridge regression (penalty by leave-one-out) on the standardised embedding. Scores
(:func:`~napari_scr2st.evaluation.metrics.regression_metrics` on log1p-normalised counts of the
test spots): ``pcc_all``, ``pcc_heg50``, ``pcc_hvg50``, ``mse``.

:func:`paired_differences` gives the mean paired difference to a baseline sampler with its t
confidence interval; :func:`plot_label_efficiency` draws the curves; :func:`write_results`
writes the tables and a markdown summary.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..progress import CancelToken, Progress

__all__ = ["COLUMNS", "DEFAULT_BUDGETS", "DEFAULT_SEEDS", "DOWNSTREAM", "PROTOCOLS", "RunRecord",
           "fit_shared_space", "iter_label_efficiency", "paired_differences", "plot_label_efficiency", "write_results"]

COLUMNS = ["protocol", "dataset", "test_section", "sampler", "budget", "seed", "pcc_all", "pcc_heg50", "pcc_hvg50",
           "mse", "n_test"]
DIFF_COLUMNS = ["protocol", "dataset", "test_section", "sampler", "budget", "metric", "baseline", "mean_diff", "sd",
                "n", "ci_low", "ci_high"]
DEFAULT_BUDGETS = (0.05, 0.1, 0.15, 0.25, 0.3, 0.5, 1.0)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
DOWNSTREAM = ("scr2net", "ridge")
PROTOCOLS = ("within", "cross")
POOLED = "all"


@dataclass
class RunRecord:
    """What one (test section, sampler, budget, seed) run trained on and was scored on.

    ``train`` and ``test`` are boolean masks over ``keys`` (``"section:spot"`` of the run's
    spots: the section in ``within``, the training sections then the test section in
    ``cross``); ``policy`` is the SCRL policy of the run (None for other samplers).
    """

    protocol: str
    test_section: str
    sampler: str
    budget: float
    seed: int
    keys: np.ndarray
    train: np.ndarray
    test: np.ndarray
    policy: Any = None


@dataclass
class _Task:
    """One test section: the spots (selectable ones and the test set), its space and the
    sections the SCRL policy trains on (``(name, AnnData, space)``)."""

    name: str
    adata: Any
    test: np.ndarray
    space: Any
    policy_envs: list[tuple[str, Any, Any]]
    policy_where: str


def _check_budgets(budgets: Sequence[float]) -> list[float]:
    out = []
    for b in budgets:
        f = float(b)
        if not np.isfinite(f) or not 0.0 < f <= 1.0:
            raise ValueError(f"budgets are fractions of the selectable spots in (0, 1]; got {b!r}")
        out.append(f)
    if len(set(out)) != len(out):
        raise ValueError(f"budgets must be distinct; got {list(budgets)}")
    return out


def _resolve_space(space_for, name: str):
    return space_for(name) if callable(space_for) else space_for


def _keyed(adata, name: str):
    """A copy of ``adata`` with ``obs_names`` ``"section:spot"`` and ``obs["section"]`` = ``name``."""
    a = adata.copy()
    a.obs_names = [f"{name}:{i}" for i in adata.obs_names]
    a.obs["section"] = name
    return a


def _within_tasks(sections: Mapping[str, Any], space_for) -> list[_Task]:
    from .within_slide import test_split

    tasks = []
    for name, a in sections.items():
        a = _keyed(a, name)
        test = test_split(a)
        others = [s for s in sections if s != name]
        if others:
            envs = [(s, sections[s], _resolve_space(space_for, s)) for s in others]
            where = "+".join(others)
        else:
            envs = [(f"{name} (non-test spots)", a[~test].copy(), _resolve_space(space_for, name))]
            where = f"{name}'s own non-test spots (single section)"
        tasks.append(_Task(name, a, test, _resolve_space(space_for, name), envs, where))
    return tasks


def _default_cross_split(sections: Mapping[str, Any]) -> dict[str, list[str]]:
    patients = {}
    for name, a in sections.items():
        if "patient" not in a.obs:
            raise ValueError(f"section {name}: obs['patient'] is missing; the cross protocol splits by patient "
                             "(or pass cross_split={test: [training sections]})")
        patients[name] = set(a.obs["patient"].astype(str))
    split = {s: [t for t in sections if not (patients[t] & patients[s])] for s in sections}
    split = {s: t for s, t in split.items() if t}
    if not split:
        raise ValueError("the cross protocol needs sections of at least two patients (obs['patient'])")
    return split


def _cross_tasks(sections: Mapping[str, Any], space_for, cross_split) -> list[_Task]:
    import anndata as ad

    split = _default_cross_split(sections) if cross_split is None else {str(k): list(v) for k, v in cross_split.items()}
    tasks = []
    for test, train in split.items():
        missing = [s for s in [test, *train] if s not in sections]
        if missing:
            raise ValueError(f"cross_split names sections that were not given: {missing}")
        if not train or test in train:
            raise ValueError(f"cross_split[{test!r}] must list training sections other than {test!r}; got {train}")
        pt = set(sections[test].obs["patient"].astype(str)) if "patient" in sections[test].obs else set()
        shared = sorted(s for s in train if "patient" in sections[s].obs
                        and pt & set(sections[s].obs["patient"].astype(str)))
        if shared:
            raise ValueError(f"cross protocol: test section {test} shares a patient with training section(s) {shared}")
        spaces = {id(_resolve_space(space_for, s)): _resolve_space(space_for, s) for s in train}
        if len(spaces) != 1:
            raise ValueError(f"cross protocol: the pooled training sections {train} need one shared reference space "
                             "(space_for gave different ones)")
        space = next(iter(spaces.values()))
        parts = [_keyed(sections[s], s) for s in [*train, test]]
        a = ad.concat(parts, join="inner")
        test_mask = (a.obs["section"].astype(str) == test).to_numpy()
        envs = [(s, sections[s], space) for s in train]
        tasks.append(_Task(test, a, test_mask, space, envs, "+".join(train) + " (the pooled training sections)"))
    return tasks


def _train_policy(task: _Task, seed: int, *, episodes: int, imitation_episodes: int, rounds: int, group_size: int,
                  token):
    from ..sampling.scrl import PolicyEnv, SCRLPolicy, iter_train_policy

    envs = [PolicyEnv.from_adata(a, space, name=name) for name, a, space in task.policy_envs]
    policy = SCRLPolicy.for_space(envs[0].space, seed=seed)
    yield from iter_train_policy(policy, envs, episodes=episodes, rounds=rounds, group_size=group_size, seed=seed,
                                 imitation_episodes=imitation_episodes, token=token)
    return policy


def _select(task: _Task, name: str, budget: float, seed: int, rounds: int, policy) -> np.ndarray:
    """The spots ``name`` selects at ``budget`` (a simulated acquisition; test spots excluded)."""
    from ..sampling.loop import run_acquisition
    from ..sampling.oracle import SimulatedOracle
    from ..sampling.pool import Pool, SelectionRequest
    from ..sampling.registry import make_sampler
    from ..sampling.thread_limits import single_thread

    pool = Pool.from_adata(task.adata, require_vision=True)
    oracle = SimulatedOracle(task.adata, pool)
    sampler = make_sampler(name, seed=seed, space=task.space, policy=policy)
    request = SelectionRequest(budget=budget, rounds=rounds, seed=seed, excluded=task.test)
    with single_thread():
        res = run_acquisition(pool, sampler, request, oracle=oracle)
    chosen = np.asarray(res.state.measured, dtype=bool)
    if (chosen & task.test).any():  # pragma: no cover - the pool's exclusions forbid it
        raise RuntimeError(f"{name} selected test spots of {task.name}")
    return chosen


def _predict(kind: str, task: _Task, train: np.ndarray, genes: list[str], *, seed: int, epochs: int,
             folds: int) -> np.ndarray:
    from ..data.expression import log1p_normalized
    from .within_slide import _ridge, _scr2net_predict

    if kind == "ridge":
        V = np.asarray(task.adata.obsm["X_vision"], dtype=np.float64)
        return _ridge(V, train, log1p_normalized(task.adata, genes, rows=np.flatnonzero(train)))
    return _scr2net_predict(task.adata, np.flatnonzero(train), genes, epochs=epochs, seed=seed, spatial=True,
                            folds=folds)


def _scores(y_true: np.ndarray, y_pred: np.ndarray, genes: list[str]) -> dict[str, float]:
    from ..evaluation.metrics import regression_metrics

    m = regression_metrics(y_true, y_pred, genes, n_top=50)
    return {k: float(m[k]) for k in ("pcc_all", "pcc_heg50", "pcc_hvg50", "mse")}


def fit_shared_space(reference, sections: Mapping[str, Any], *, celltype_key: str | None = None):
    """One reference space for all ``sections`` (the ``cross`` protocol pools them), fitted on the
    genes every section has: a section missing one of the space's genes could not be embedded."""
    from ..session import fit_reference_space

    first = next(iter(sections.values()))
    shared = first.var_names
    for a in sections.values():
        shared = shared.intersection(a.var_names, sort=False)
    spots = first if len(sections) == 1 else first[:, shared]
    return fit_reference_space(reference, spots, celltype_key=celltype_key)


def iter_label_efficiency(
    sections: Mapping[str, Any],
    space_for,
    *,
    protocol: str = "within",
    samplers: Sequence[str] | None = None,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    rounds: int = 2,
    policy_train_sections: Mapping[str, Sequence[str]] | None = None,
    episodes: int = 200,
    imitation_episodes: int = 100,
    group_size: int = 4,
    n_genes: int = 250,
    epochs: int = 30,
    folds: int = 3,
    downstream: str | Sequence[str] = DOWNSTREAM,
    dataset: str = "her2st",
    cross_split: Mapping[str, Sequence[str]] | None = None,
    test_sections: Sequence[str] | None = None,
    on_run: Callable[[RunRecord], Any] | None = None,
    scrl_policy: Any = None,
    token: CancelToken | None = None,
) -> Generator[Progress, None, dict[str, pd.DataFrame]]:
    """Run the protocol of the module docstring; yields progress, returns ``{downstream: frame}``.

    ``sections``: ``{name: fully measured section AnnData with obsm["X_vision"]}``.
    ``space_for``: the reference space of a section, ``space_for(name)`` (or one space for all).
    ``samplers``: names of :data:`~napari_scr2st.sampling.registry.SAMPLER_NAMES` (default all).
    ``budgets``: fractions of the selectable spots in (0, 1]. ``policy_train_sections``
    (``{test section: [sections]}``) overrides the sections the SCRL policy of a test section
    trains on (never the test section itself). ``test_sections`` keeps only those test sections
    (the others still serve as policy training sections). ``on_run`` is called with a
    :class:`RunRecord` for every row. ``scrl_policy``: a trained SCRL policy used for every test
    section and seed instead of one trained per seed (``episodes`` and ``imitation_episodes`` are
    then unused; it must not have been trained on the test sections). Every frame has exactly
    :data:`COLUMNS` and ``attrs["notes"]``.
    """
    from ..data.expression import log1p_normalized
    from ..model.panel import select_panel
    from ..sampling.registry import SAMPLER_NAMES

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")
    kinds = [downstream] if isinstance(downstream, str) else list(downstream)
    bad = [k for k in kinds if k not in DOWNSTREAM]
    if bad or not kinds:
        raise ValueError(f"downstream must be among {DOWNSTREAM}; got {list(kinds)}")
    samplers = list(SAMPLER_NAMES if samplers is None else samplers)
    unknown = [s for s in samplers if s not in SAMPLER_NAMES]
    if unknown:
        raise ValueError(f"unknown sampler(s) {unknown}; choose among {', '.join(SAMPLER_NAMES)}")
    budgets = _check_budgets(budgets)
    seeds = [int(s) for s in seeds]
    if not sections or not seeds or not samplers:
        raise ValueError("need at least one section, one seed and one sampler")
    for name, a in sections.items():
        if "X_vision" not in a.obsm:
            raise ValueError(f"section {name}: obsm['X_vision'] is missing (features.ensure_vision_embedding)")
    tasks = (_within_tasks(sections, space_for) if protocol == "within"
             else _cross_tasks(sections, space_for, cross_split))
    if test_sections is not None:
        keep = [str(t) for t in test_sections]
        unknown_t = [t for t in keep if t not in {task.name for task in tasks}]
        if unknown_t:
            raise ValueError(f"test_sections: {unknown_t} are not test sections of the {protocol} protocol")
        tasks = [task for task in tasks if task.name in keep]
    for task in tasks:
        if policy_train_sections is not None and task.name in policy_train_sections:
            names = list(policy_train_sections[task.name])
            if task.name in names or any(n not in sections for n in names):
                raise ValueError(f"policy_train_sections[{task.name!r}] = {names}: sections given, other than the "
                                 "test section")
            task.policy_envs = [(n, sections[n], _resolve_space(space_for, n)) for n in names]
            task.policy_where = "+".join(names)
    use_scrl = "scrl" in samplers
    train_scrl = use_scrl and scrl_policy is None
    partial = [b for b in budgets if b < 1.0]
    total = len(tasks) * len(seeds) * (len(partial) * len(samplers) + (1.0 in budgets) + train_scrl)
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    notes = []
    if train_scrl:
        notes += [f"{protocol}, test section {t.name}: SCRL policy retrained per seed on {t.policy_where} "
                  f"({imitation_episodes} imitation + {episodes} REINFORCE episodes)" for t in tasks]
    elif use_scrl:
        notes.append(f"{protocol}: SCRL uses the given policy for every test section and seed (not retrained)")
    if 1.0 in budgets:
        notes.append("budget 1.0: every sampler selects all selectable spots; computed once per test section and "
                     "seed and reported for every sampler")
    step = 0
    for task in tasks:
        genes = select_panel(task.adata, ~task.test, n_genes, method="heg")
        Y_te = log1p_normalized(task.adata, genes, rows=np.flatnonzero(task.test))
        keys = np.asarray(task.adata.obs_names).astype(str)
        n_test = int(task.test.sum())
        for seed in seeds:
            if token is not None:
                token.raise_if_cancelled()
            policy = scrl_policy
            if train_scrl:
                train_policy = _train_policy(task, seed, episodes=episodes, imitation_episodes=imitation_episodes,
                                             rounds=rounds, group_size=group_size, token=token)
                while True:
                    try:
                        ev = next(train_policy)
                    except StopIteration as stop:
                        policy = stop.value
                        break
                    yield Progress(step, total, f"{task.name} seed {seed}: SCRL policy {ev.step}/{ev.total}")
                step += 1

            for budget in budgets:
                if token is not None:
                    token.raise_if_cancelled()
                # at 100 % every sampler selects every selectable spot: one model for all of them
                group = [samplers] if budget == 1.0 else [[name] for name in samplers]
                for names in group:
                    train = ~task.test if budget == 1.0 else _select(task, names[0], budget, seed, rounds, policy)
                    preds = {k: _predict(k, task, train, genes, seed=seed, epochs=epochs, folds=folds) for k in kinds}
                    scores = {k: _scores(Y_te, P[task.test], genes) for k, P in preds.items()}
                    for name in names:
                        for kind in kinds:
                            rows[kind].append({"protocol": protocol, "dataset": dataset, "test_section": task.name,
                                               "sampler": name, "budget": budget, "seed": seed, **scores[kind],
                                               "n_test": n_test})
                        if on_run is not None:
                            on_run(RunRecord(protocol, task.name, name, budget, seed, keys, train.copy(),
                                             task.test.copy(), policy if name == "scrl" else None))
                    step += 1
                    who = names[0] if len(names) == 1 else "every sampler"
                    yield Progress(step, total, f"{task.name} {budget:.0%} {who} seed {seed}")
    frames = {}
    for kind in kinds:
        df = pd.DataFrame(rows[kind], columns=COLUMNS)
        df.attrs["notes"] = [*notes, f"downstream model: {kind}"]
        frames[kind] = df
    return frames


# ------------------------------------------------------------------------------ statistics


def _ci(g: pd.core.groupby.SeriesGroupBy) -> pd.DataFrame:
    from scipy import stats

    out = g.agg(mean_diff="mean", sd="std", n="count")
    half = stats.t.ppf(0.975, np.maximum(out["n"] - 1, 1)) * out["sd"] / np.sqrt(out["n"])
    half = half.where(out["n"] > 1)
    out["ci_low"] = out["mean_diff"] - half
    out["ci_high"] = out["mean_diff"] + half
    return out.reset_index()


def paired_differences(df: pd.DataFrame, baseline: str = "random", *, metric: str = "pcc_heg50") -> pd.DataFrame:
    """Mean paired difference ``metric(sampler) - metric(baseline)`` with its sd, n and 95 % t CI.

    Pairs are matched on (protocol, dataset, test section, budget, seed). One row per
    (protocol, dataset, test section, sampler, budget), the CI over seeds; plus pooled rows
    (``test_section`` = ``"all"``) whose pairs are every (test section, seed). n = 1 gives an
    undefined sd and CI (NaN). The baseline itself has no row.
    """
    if baseline not in set(df["sampler"]):
        raise ValueError(f"baseline sampler {baseline!r} is not in the results (samplers: {sorted(set(df['sampler']))})")
    pair = ["protocol", "dataset", "test_section", "budget", "seed"]
    base = df[df["sampler"] == baseline][pair + [metric]].rename(columns={metric: "_base"})
    if base.duplicated(pair).any():
        raise ValueError(f"the results hold several {baseline} rows for one (test section, budget, seed)")
    m = df[df["sampler"] != baseline].merge(base, on=pair, how="inner")
    m["_diff"] = m[metric] - m["_base"]
    per = _ci(m.groupby(["protocol", "dataset", "test_section", "sampler", "budget"], sort=False)["_diff"])
    pooled = _ci(m.groupby(["protocol", "dataset", "sampler", "budget"], sort=False)["_diff"])
    pooled["test_section"] = POOLED
    out = pd.concat([per, pooled], ignore_index=True)
    out["metric"] = metric
    out["baseline"] = baseline
    return out[DIFF_COLUMNS]


def _curve(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (protocol, dataset, sampler, budget): mean over seeds of the per-seed mean over test
    sections, its sd over seeds, n seeds and the 95 % t half-width."""
    from scipy import stats

    per_seed = df.groupby(["protocol", "dataset", "sampler", "budget", "seed"], sort=False)[metric].mean()
    g = per_seed.groupby(["protocol", "dataset", "sampler", "budget"], sort=False)
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    out["sd"] = out["sd"].fillna(0.0)
    out["ci"] = stats.t.ppf(0.975, np.maximum(out["n"] - 1, 1)) * out["sd"] / np.sqrt(out["n"])
    return out


def plot_label_efficiency(df: pd.DataFrame, path, *, metric: str = "pcc_heg50", band: str = "sd") -> Path:
    """``metric`` vs budget per sampler: mean over seeds (of the mean over test sections) with a
    band of ± sd (``band="sd"``) or the 95 % t CI (``band="ci"``) over seeds; one panel per
    protocol and dataset. Written atomically as PNG; returns the path."""
    if band not in ("sd", "ci"):
        raise ValueError(f"band must be 'sd' or 'ci'; got {band!r}")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path

    cur = _curve(df, metric)
    panels = list(dict.fromkeys(zip(cur["protocol"], cur["dataset"], strict=True)))
    samplers = list(dict.fromkeys(df["sampler"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 0.6, 3.6), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, (prot, data) in zip(axes[0], panels, strict=True):
        d = cur[(cur["protocol"] == prot) & (cur["dataset"] == data)]
        for k, name in enumerate(samplers):
            e = d[d["sampler"] == name].sort_values("budget")
            if e.empty:
                continue
            x = 100 * e["budget"].to_numpy()
            m = e["mean"].to_numpy()
            w = e[band].to_numpy()
            ax.plot(x, m, marker="o", ms=3, lw=1.3, color=colors(k % 10), label=name)
            ax.fill_between(x, m - w, m + w, color=colors(k % 10), alpha=0.15, lw=0)
        ax.set_title(f"{data}: {prot}", fontsize=9)
        ax.set_xlabel("budget (% of selectable spots)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _markdown(frames: Mapping[str, pd.DataFrame], metric: str, baseline: str) -> str:
    lines = ["# Label efficiency", ""]
    for kind, df in frames.items():
        lines += [f"## Downstream: {kind}", "", f"{metric}, mean ± sd over seeds (of the mean over test sections):",
                  "", "| protocol | dataset | sampler | " + " | ".join(f"{b:g}" for b in sorted(set(df["budget"])))
                  + " |"]
        budgets = sorted(set(df["budget"]))
        lines.append("|---|---|---|" + "---|" * len(budgets))
        cur = _curve(df, metric)
        for (prot, data, name), e in cur.groupby(["protocol", "dataset", "sampler"], sort=False):
            e = e.set_index("budget")
            cells = [f"{e.loc[b, 'mean']:.3f} ± {e.loc[b, 'sd']:.3f}" if b in e.index else "" for b in budgets]
            lines.append(f"| {prot} | {data} | {name} | " + " | ".join(cells) + " |")
        if baseline in set(df["sampler"]):
            diff = paired_differences(df, baseline, metric=metric)
            diff = diff[diff["test_section"] == POOLED]
            lines += ["", f"Paired difference to {baseline} (all test sections and seeds pooled), 95 % t CI:", "",
                      "| protocol | dataset | sampler | budget | mean diff | 95 % CI | n |", "|---|---|---|---|---|---|---|"]
            for r in diff.itertuples():
                ci = "n/a" if pd.isna(r.ci_low) else f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
                lines.append(f"| {r.protocol} | {r.dataset} | {r.sampler} | {r.budget:g} | {r.mean_diff:+.3f} | {ci} "
                             f"| {r.n} |")
        lines += ["", "Notes:", ""] + [f"- {n}" for n in df.attrs.get("notes", [])] + [""]
    return "\n".join(lines)


def write_results(results: pd.DataFrame | Mapping[str, pd.DataFrame], folder, *, metric: str = "pcc_heg50",
                  baseline: str = "random") -> list[Path]:
    """Write ``label_efficiency.csv`` (SCR2Net; a single frame is taken as SCR2Net),
    ``label_efficiency_ridge.csv`` (the ridge surrogate, when present) and ``label_efficiency.md``
    (curves and paired differences to ``baseline``), atomically; returns the paths written."""
    from ..atomic import atomic_write

    frames = {"scr2net": results} if isinstance(results, pd.DataFrame) else dict(results)
    unknown = [k for k in frames if k not in DOWNSTREAM]
    if unknown:
        raise ValueError(f"results keys must be among {DOWNSTREAM}; got {unknown}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, df in frames.items():
        p = folder / ("label_efficiency.csv" if kind == "scr2net" else f"label_efficiency_{kind}.csv")
        with atomic_write(p, newline="") as fh:
            df[COLUMNS].to_csv(fh, index=False)
        paths.append(p)
    p = folder / "label_efficiency.md"
    with atomic_write(p) as fh:
        fh.write(_markdown(frames, metric, baseline))
    paths.append(p)
    return paths
