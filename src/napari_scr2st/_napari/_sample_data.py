"""napari sample-data contributions."""

from __future__ import annotations

import os

#: ``SCR2ST_SAMPLE_SPOTS`` changes the size of the synthetic sample (tests use a few hundred)
SAMPLE_SPOTS_ENV = "SCR2ST_SAMPLE_SPOTS"


def synthetic_sample():
    """The embedded SYNTHETIC section (2,000 spots, seed 0): image, spots coloured by nothing,
    and the ground-truth compartments as a hidden spot layer for orientation."""
    from ..data import make_sample
    from ..layers import section_layers, spots_layer

    n = int(os.environ.get(SAMPLE_SPOTS_ENV, "2000") or 2000)
    s = make_sample(n_spots=n, seed=0)
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
    return layers


def her2st_sample():
    """One REAL her2st section (C3, HER2+ breast, Andersson et al. 2021) from a local copy
    (``SCR2ST_HER2ST_ROOT``) or, where the network allows, downloaded once to the cache."""
    from ..datasets import load_her2st_section
    from ..layers import section_layers

    return section_layers(load_her2st_section("C3"))
