"""The sampling benchmark: samplers x budgets x seeds on fully measured sections (simulation).

For every test section, budget, seed and sampler the acquisition loop runs with a
:class:`~napari_scr2st.sampling.oracle.SimulatedOracle`; the reward terms of the final measured
set (equal weights unless given) and a downstream score are recorded: the mean per-gene Pearson
correlation, on the UNMEASURED spots, of a ridge predictor (vision + coordinates -> log1p) trained
on the measured spots, over the 50 most variable of the section's 500 most expressed genes
(``pcc_ridge``). The SCRL policy of a test section must have been trained on OTHER sections
(the caller decides the split and records it in ``policy_note``).

:func:`iter_benchmark` yields Progress and returns a tidy DataFrame (one row per run);
:func:`summarize`, :func:`markdown_table` and :func:`plot_benchmark` turn it into the report.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..progress import CancelToken, Progress
from ..sampling.loop import run_acquisition
from ..sampling.measured import MeasuredEmbedder, RewardEvaluator
from ..sampling.oracle import SimulatedOracle
from ..sampling.pool import Pool, SelectionRequest
from ..sampling.registry import make_sampler
from ..sampling.reward import RewardWeights
from ..sampling.thread_limits import single_thread

__all__ = ["BenchSection", "iter_benchmark", "iter_input_sections", "summarize", "markdown_table", "plot_benchmark", "downstream_pcc",
           "DEFAULT_SAMPLERS", "DEFAULT_BUDGETS"]

DEFAULT_SAMPLERS = ("random", "grid", "kcenter", "typiclust", "ar", "greedy", "scrl")
DEFAULT_BUDGETS = ("10%", "15%", "30%")
TERM_COLUMNS = ("r_sc", "r_type", "r_sp", "total", "pcc_ridge")


@dataclass
class BenchSection:
    """One fully measured test section (with ``obsm['X_vision']``), its space and held-out policy."""

    dataset: str
    name: str
    adata: Any
    space: Any
    policy: Any = None
    policy_note: str = ""
    vision_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _eval_genes(adata, n_top: int = 500, n_var: int = 50) -> list[str]:
    from ..data.expression import log1p_normalized

    X = log1p_normalized(adata)
    top = np.argsort(-X.mean(axis=0))[:n_top]
    var = X[:, top].var(axis=0)
    return [str(adata.var_names[i]) for i in top[np.argsort(-var)[:n_var]]]


def downstream_pcc(adata, measured: np.ndarray, genes: Sequence[str]) -> float:
    """Mean per-gene PCC on unmeasured spots of a ridge trained on the measured ones (evaluation
    only: it reads the held-out truth AFTER the selection is final)."""
    from ..data.expression import log1p_normalized
    from ..sampling.surrogate import RidgePredictor

    measured = np.asarray(measured, dtype=bool)
    test = ~measured
    if measured.sum() < 3 or test.sum() < 3:
        return float("nan")
    pred = RidgePredictor(genes).fit(adata, measured).predict(adata)[test]
    truth = log1p_normalized(adata, genes, rows=test)
    pc = pred - pred.mean(axis=0)
    tc = truth - truth.mean(axis=0)
    den = np.sqrt((pc**2).sum(axis=0) * (tc**2).sum(axis=0))
    ok = den > 1e-12
    return float(((pc * tc).sum(axis=0)[ok] / den[ok]).mean()) if ok.any() else float("nan")


def iter_benchmark(
    sections: Sequence[BenchSection],
    *,
    samplers: Sequence[str] = DEFAULT_SAMPLERS,
    budgets: Sequence[str | int | float] = DEFAULT_BUDGETS,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    rounds: int = 4,
    weights: RewardWeights | None = None,
    token: CancelToken | None = None,
) -> Generator[Progress, None, pd.DataFrame]:
    """Run every combination (see module docstring); SCRL is skipped where a section has no policy."""
    weights = weights or RewardWeights()
    jobs = [(s, b, seed, name) for s in sections for b in budgets for seed in seeds for name in samplers
            if not (name == "scrl" and s.policy is None)]
    rows: list[dict[str, Any]] = []
    genes_cache: dict[int, list[str]] = {}
    embedders: dict[int, MeasuredEmbedder] = {}
    for j, (sec, budget, seed, name) in enumerate(jobs):
        if token is not None:
            token.raise_if_cancelled()
        key = id(sec)
        if key not in genes_cache:
            genes_cache[key] = _eval_genes(sec.adata)
            embedders[key] = MeasuredEmbedder(sec.space)
        pool = Pool.from_adata(sec.adata, require_vision=True)
        oracle = SimulatedOracle(sec.adata, pool)
        evaluator = RewardEvaluator(sec.space, pool, weights, embedder=embedders[key])
        sampler = make_sampler(name, seed=seed, space=sec.space, weights=weights, policy=sec.policy)
        t0 = time.perf_counter()
        with single_thread():
            res = run_acquisition(pool, sampler, SelectionRequest(budget=budget, rounds=rounds, seed=seed),
                                  oracle=oracle, evaluator=evaluator)
        dt = time.perf_counter() - t0
        terms = res.final
        with single_thread():
            pcc = downstream_pcc(sec.adata, res.state.measured, genes_cache[key])
        rows.append({
            "dataset": sec.dataset, "section": sec.name, "budget": str(budget), "n_selected": res.state.n_selected,
            "n_spots": pool.n_in_pool, "seed": seed, "sampler": name,
            "r_sc": terms.sc, "r_type": terms.type, "r_sp": terms.sp, "total": terms.total(weights),
            "pcc_ridge": pcc, "seconds": dt,
            "policy": sec.policy_note if name == "scrl" else "", "vision": sec.vision_note,
        })
        yield Progress(step=j + 1, total=len(jobs), message=f"{sec.name} {budget} {name} seed {seed}",
                       metrics={"total": terms.total(weights)})
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of each term, per dataset/section/budget/sampler."""
    g = df.groupby(["dataset", "section", "budget", "sampler"], sort=False)
    out = g[list(TERM_COLUMNS) + ["seconds"]].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["n_seeds"] = g.size()
    return out.reset_index()


def markdown_table(summary: pd.DataFrame, *, sections: Sequence[str] | None = None) -> str:
    """A markdown table: one row per section/budget/sampler, ``mean ± sd`` per term."""
    s = summary if sections is None else summary[summary["section"].isin(sections)]
    cols = ["dataset", "section", "budget", "sampler"]
    head = "| " + " | ".join(cols + list(TERM_COLUMNS) + ["s/run", "n"]) + " |"
    sep = "|" + "---|" * (len(cols) + len(TERM_COLUMNS) + 2)
    lines = [head, sep]
    best = s.groupby(["section", "budget"])["total_mean"].transform("max")
    for i, r in s.iterrows():
        cells = [str(r[c]) for c in cols]
        for t in TERM_COLUMNS:
            m, sd = r[f"{t}_mean"], r[f"{t}_std"]
            txt = "nan" if pd.isna(m) else f"{m:.3f} ± {0.0 if pd.isna(sd) else sd:.3f}"
            if t == "total" and not pd.isna(m) and m == best.loc[i]:
                txt = f"**{txt}**"
            cells.append(txt)
        cells += [f"{r['seconds_mean']:.2f}", str(int(r["n_seeds"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_benchmark(df: pd.DataFrame, path, *, title: str = "sampling benchmark") -> Any:
    """Total reward and ridge PCC vs budget per sampler (mean ± sd over seeds), one column per section."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    secs = list(dict.fromkeys(df["section"]))
    samplers = list(dict.fromkeys(df["sampler"]))
    budgets = list(dict.fromkeys(df["budget"]))
    fig, axes = plt.subplots(2, len(secs), figsize=(3.2 * len(secs) + 1, 6), squeeze=False, sharex=True)
    colors = plt.get_cmap("tab10")
    for c, sec in enumerate(secs):
        d = df[df["section"] == sec]
        for r, metric in enumerate(("total", "pcc_ridge")):
            ax = axes[r, c]
            for k, name in enumerate(samplers):
                e = d[d["sampler"] == name]
                if e.empty:
                    continue
                g = e.groupby("budget")[metric]
                m = g.mean().reindex(budgets)
                sd = g.std().reindex(budgets).fillna(0)
                x = np.arange(len(budgets)) + (k - len(samplers) / 2) * 0.04
                ax.errorbar(x, m.to_numpy(), yerr=sd.to_numpy(), marker="o", ms=3, lw=1.2, capsize=2,
                            color=colors(k % 10), label=name if (r == 0 and c == 0) else None)
            ax.set_xticks(range(len(budgets)), budgets)
            if r == 0:
                ax.set_title(sec, fontsize=9)
            if c == 0:
                ax.set_ylabel("total reward (equal weights)" if metric == "total" else "ridge PCC (unmeasured)")
            ax.grid(alpha=0.3)
    fig.suptitle(title, y=0.995, fontsize=10)
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=len(samplers), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ datasets


def _train_policy(envs, *, episodes: int, seed: int, rounds: int, group_size: int, imitation_episodes: int = 0,
                  token=None):
    from ..sampling.scrl import SCRLPolicy, iter_train_policy

    policy = SCRLPolicy.for_space(envs[0].space, seed=seed)
    hist = yield from iter_train_policy(policy, envs, episodes=episodes, rounds=rounds, group_size=group_size,
                                        seed=seed, imitation_episodes=imitation_episodes, token=token)
    return policy, hist


def _policy_note(episodes: int, imitation: int, where: str) -> str:
    im = f"{imitation} imitation (greedy teacher) + " if imitation else ""
    return f"{im}{episodes} REINFORCE episodes on {where}"


def iter_synthetic_sections(
    *,
    n_spots: int = 2000,
    seed: int = 0,
    train_seeds: Sequence[int] = (1, 2, 3),
    train_spots: int = 800,
    episodes: int = 150,
    imitation_episodes: int = 0,
    rounds: int = 4,
    group_size: int = 4,
    token: CancelToken | None = None,
) -> Generator[Progress, None, list[BenchSection]]:
    """The embedded sample (``make_sample(n_spots, seed)``) as test section; the SCRL policy is
    trained on OTHER synthetic samples (``train_seeds``, each with its own reference space; the
    nine cell types are shared). Vision: patch statistics (stand-in; the encoder is not needed
    to compare samplers on synthetic images)."""
    from ..data import make_sample
    from ..features.patch_stats import patch_statistics_embedding
    from ..reference import ReferenceSpace, prepare_reference
    from ..sampling.scrl import PolicyEnv

    def build(n, s, name):
        smp = make_sample(n, seed=s, section=name)
        a = smp.section
        a.obsm["X_vision"] = patch_statistics_embedding(a)
        with single_thread(torch_too=False):
            space = ReferenceSpace.fit(prepare_reference(smp.reference, a.var_names, spots_name=name), seed=s)
        return a, space

    yield Progress(0, 1, "synthetic sections")
    test, test_space = build(n_spots, seed, "SYN-test")
    envs = []
    for s in train_seeds:
        a, sp_ = build(train_spots, s, f"SYN-train{s}")
        envs.append(PolicyEnv.from_adata(a, sp_))
    policy = None
    note = ""
    if episodes > 0 or imitation_episodes > 0:
        policy, hist = yield from _train_policy(envs, episodes=episodes, seed=seed, rounds=rounds,
                                                group_size=group_size, imitation_episodes=imitation_episodes,
                                                token=token)
        note = _policy_note(episodes, imitation_episodes,
                            f"synthetic seeds {list(train_seeds)} ({train_spots} spots each)")
    return [BenchSection("synthetic", "SYN-test", test, test_space, policy, note, "patch statistics (stand-in)")]


HER2ST_IMAGED = ("B4", "C2", "C3", "C4", "C5", "C6")


def iter_her2st_sections(
    root,
    reference_path,
    *,
    sections: Sequence[str] = HER2ST_IMAGED,
    splits: dict[str, Sequence[str]] | None = None,
    encoder: str = "efficientnet_lite0",
    **kw,
) -> Generator[Progress, None, list[BenchSection]]:
    """her2st sections with images as test sections (default split: C2-C5 -> C6 and B4, both
    unseen by the policy); the rest as :func:`iter_input_sections`."""
    from ..io.legacy_st import read_her2st

    adatas = {}
    for i, s in enumerate(sections):
        yield Progress(i, len(sections), f"reading {s}")
        adatas[s] = read_her2st(root, s)
    splits = dict(splits) if splits is not None else {"C6": ["C2", "C3", "C4", "C5"], "B4": ["C2", "C3", "C4", "C5"]}
    return (yield from iter_input_sections(adatas, reference_path, splits=splits, encoder=encoder, dataset="her2st",
                                           **kw))


def iter_input_sections(
    adatas: dict[str, Any],
    reference,
    *,
    splits: dict[str, Sequence[str]] | None = None,
    episodes: int = 200,
    imitation_episodes: int = 0,
    rounds: int = 4,
    group_size: int = 4,
    seed: int = 0,
    encoder: str = "efficientnet_lite0",
    dataset: str = "input",
    token: CancelToken | None = None,
) -> Generator[Progress, None, list[BenchSection]]:
    """Fully measured sections of any reader as test sections: ``reference`` (a path or an
    AnnData) is the single-cell space (fitted on the genes shared with ALL the sections), and one
    SCRL policy per entry of ``splits`` ``{test section: training sections}`` (default: every
    other section, when there are several; a section without a split gets no SCRL row). Vision:
    ``encoder`` (see :func:`napari_scr2st.features.ensure_vision_embedding`)."""
    from ..features import ensure_vision_embedding
    from ..reference import ReferenceSpace, prepare_reference, read_reference
    from ..sampling.scrl import PolicyEnv

    names = list(adatas)
    if splits is None:
        splits = {s: [t for t in names if t != s] for s in names} if len(names) > 1 else {}
    notes: dict[str, str] = {}
    for i, (s, a) in enumerate(adatas.items()):
        yield Progress(i, len(adatas), f"{s}: vision embedding")
        notes[s] = ensure_vision_embedding(a, encoder)
    genes = None
    for a in adatas.values():
        genes = a.var_names if genes is None else genes.intersection(a.var_names)
    ref = read_reference(reference) if isinstance(reference, (str, bytes)) or hasattr(reference, "__fspath__") else reference
    with single_thread(torch_too=False):
        prepared = prepare_reference(ref, list(genes), spots_name=f"{dataset} " + "+".join(names))
        space = ReferenceSpace.fit(prepared, seed=seed)
    envs = {s: PolicyEnv.from_adata(a, space, name=s) for s, a in adatas.items()}
    policies: dict[tuple[str, ...], Any] = {}
    out = []
    for s, a in adatas.items():
        policy, pnote = None, ""
        if s in splits and splits[s] and (episodes > 0 or imitation_episodes > 0):
            train = tuple(splits[s])
            if s in train:
                raise ValueError(f"the SCRL policy for {s} must not be trained on {s}")
            if train not in policies:
                yield Progress(0, 1, f"training SCRL on {'+'.join(train)}")
                policies[train], _ = yield from _train_policy([envs[t] for t in train], episodes=episodes, seed=seed,
                                                              rounds=rounds, group_size=group_size,
                                                              imitation_episodes=imitation_episodes, token=token)
            policy, pnote = policies[train], _policy_note(episodes, imitation_episodes, "+".join(train))
        out.append(BenchSection(dataset, s, a, space, policy, pnote, notes[s],
                                extra={"overlap": str(prepared.overlap)}))
    return out
