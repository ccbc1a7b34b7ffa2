"""napari sample-data contributions.

napari calls a sample's function in the GUI thread and needs a layer back at once. In a viewer
the samples therefore return a small empty placeholder layer ("... (loading)") and build the
section in a thread worker (a progress dock with Cancel while it runs); the real layers replace
the placeholder when it is done. Without a viewer, or with ``SCR2ST_SYNC_WORKERS=1`` (tests,
scripts), they are built at once.
"""

from __future__ import annotations

import os

import numpy as np

#: ``SCR2ST_SAMPLE_SPOTS`` changes the size of the synthetic sample (tests use a few hundred)
SAMPLE_SPOTS_ENV = "SCR2ST_SAMPLE_SPOTS"


def iter_synthetic_layers(n: int):
    """The synthetic sample's layers, as a progress generator (see :func:`synthetic_sample`)."""
    from ..data import make_sample
    from ..layers import section_layers, spots_layer
    from ..progress import Progress

    yield Progress(0, 2, f"simulating a section of {n} spots")
    s = make_sample(n_spots=n, seed=0)
    yield Progress(1, 2, "building the layers")
    layers = section_layers(s.section)
    layers[-1][1]["metadata"]["reference"] = s.reference  # the matching single-cell reference travels along
    data, kw, kind = spots_layer(
        s.section, name="SYN1 true compartments", color_by="compartment",
        extra_features={"compartment": s.section.obs["true_compartment"].astype(str).to_numpy()},
    )
    kw["visible"] = False
    kw["border_width"] = 0
    kw["metadata"] = {"section": "SYN1", "ground_truth": True}
    layers.append((data, kw, kind))
    yield Progress(2, 2, "adding the layers")
    return layers


def iter_her2st_layers(section: str = "C3"):
    from ..datasets import load_her2st_section
    from ..layers import section_layers
    from ..progress import Progress

    yield Progress(0, 2, f"reading her2st {section}")
    adata = load_her2st_section(section)
    yield Progress(1, 2, "building the layers")
    layers = section_layers(adata)
    yield Progress(2, 2, "adding the layers")
    return layers


def _sample(title: str, name: str, gen_factory):
    import napari

    from ..progress import drive
    from . import _workers as W

    viewer = napari.current_viewer()
    if viewer is None or W.sync_workers():
        return drive(gen_factory(), use_tqdm=False)
    placeholder = f"{name} (loading)"
    W.load_layers_in_background(viewer, title, gen_factory, placeholder=placeholder, start_later=True)
    return [(np.zeros((0, 2)), {"name": placeholder, "metadata": {"scr2st_placeholder": True}}, "points")]


def synthetic_sample():
    """The embedded SYNTHETIC section (2,000 spots, seed 0): image, spots coloured by nothing,
    and the ground-truth compartments as a hidden spot layer for orientation."""
    n = int(os.environ.get(SAMPLE_SPOTS_ENV, "2000") or 2000)
    return _sample("SCR2-ST: opening the synthetic sample", "SYN1", lambda: iter_synthetic_layers(n))


def her2st_sample():
    """One REAL her2st section (C3, HER2+ breast, Andersson et al. 2021) from a local copy
    (``SCR2ST_HER2ST_ROOT``) or, where the network allows, downloaded once to the cache."""
    return _sample("SCR2-ST: opening her2st C3", "C3", lambda: iter_her2st_layers("C3"))
