"""Cost and verdicts of the sampling dock's policy check (Qt-free).

    python benchmarks/bench_policy_check.py                  # 400 and 3,000 spots
    python benchmarks/bench_policy_check.py --spots 5000 --episodes 10

``AcquisitionSession.check_policy`` lets the greedy reward maximiser propose the same round as
the SCRL policy and compares what the two add to the expected reward at the current weights
(the dock runs it in a worker after the selection settles). For each section size (synthetic
sample, patch-statistics embedding, 15 % budget in 2 rounds) this prints, for rounds 1 and 2
and three weight settings, the time of one re-selection, the time of one check and its verdict,
for an untrained policy and (``--episodes`` > 0) one pre-trained here for that many episodes.
Numbers depend on the machine and its load: the script prints the CPU count and load average.
"""

from __future__ import annotations

import argparse
import os
import time

WEIGHTS = ((1.0, 1.0, 1.0), (0.0, 0.0, 5.0), (5.0, 1.0, 0.0))


def run(n_spots: int, episodes: int, seed: int) -> None:
    from napari_scr2st.config import SamplingSettings
    from napari_scr2st.data import make_sample
    from napari_scr2st.progress import drive
    from napari_scr2st.session import AcquisitionSession, fit_reference_space

    smp = make_sample(n_spots=n_spots, seed=seed)
    space = fit_reference_space(smp.reference, list(map(str, smp.section.var_names)))
    policies = ["untrained"] + ([f"pre-trained {episodes} episodes"] if episodes else [])
    trained = None
    for label in policies:
        s = AcquisitionSession(smp.section.copy(), reference=smp.reference, space=space,
                               settings=SamplingSettings(sampler="scrl", budget="15%", rounds=2, seed=seed))
        drive(s.iter_prepare(encoder="patch-stats"), use_tqdm=False)
        s.finish_prepare()
        if label != "untrained":
            if trained is None:
                t = time.perf_counter()
                trained = drive(s.iter_pretrain(episodes, copy=True), use_tqdm=False)
                print(f"  pre-training {episodes} episodes: {time.perf_counter() - t:.1f} s")
            s.set_policy(trained, label)
        for rnd in (1, 2):
            for w in WEIGHTS:
                s.update_settings(w_sc=w[0], w_type=w[1], w_sp=w[2])
                t = time.perf_counter()
                s.reselect()
                t_sel = time.perf_counter() - t
                t = time.perf_counter()
                c = s.check_policy()
                t_chk = time.perf_counter() - t
                ratio = "-" if c.ratio is None else f"{c.ratio:.2f}"
                print(f"  {n_spots} spots, {label}, round {rnd}, weights {w}: reselect {t_sel:.2f} s, "
                      f"check {t_chk:.2f} s, policy/greedy gain {ratio}, {c.verdict}: {c.message}")
            if rnd == 1:
                s.update_settings(w_sc=1.0, w_type=1.0, w_sp=1.0)
                s.reselect()
                s.sequence_simulated()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spots", type=int, nargs="+", default=[400, 3000])
    ap.add_argument("--episodes", type=int, default=0, help="also check a policy pre-trained this long")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for n in args.spots:
        run(n, args.episodes, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
