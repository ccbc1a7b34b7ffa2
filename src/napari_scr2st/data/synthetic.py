"""The embedded sample: a SYNTHETIC tissue section and a matching single-cell reference.

Nothing here is real data. The generator draws, deterministically from ``seed``:

1. a tissue mask (a smooth blob) on a hexagonal spot lattice of about ``n_spots`` spots;
2. tissue compartments from smooth random fields: tumour, stroma, immune infiltrate,
   vessel-rich stroma, normal duct, and one RARE compartment (plasma-cell aggregates, about
   2-4 % of spots) placed as a few small disks;
3. an H&E-like RGB image whose colour and nuclear texture depend on the compartment, so a
   vision encoder can tell compartments apart (pink stroma, purple dense tumour nuclei, small
   dark immune nuclei, white lumen/fat, ...);
4. cell-type proportions per compartment (the nine major types of Wu et al. 2021), gene
   programmes per cell type (marker genes plus shared background), and per-spot counts drawn
   from a negative binomial around the spot's mixture;
5. a single-cell reference: cells of each type drawn from the same programmes (different
   library sizes and dispersion), labelled in ``obs["celltype_major"]``.

Ground truth (for tests and benchmarks only) is kept in ``obs["true_compartment"]`` and
``obsm["true_proportions"]``; no sampler or model reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import ndimage

from .model import make_section

CELL_TYPES = [
    "Cancer Epithelial",
    "Normal Epithelial",
    "CAFs",
    "PVL",
    "Endothelial",
    "T-cells",
    "B-cells",
    "Myeloid",
    "Plasmablasts",
]

MARKERS = {
    "Cancer Epithelial": ["EPCAM", "KRT19", "KRT8", "ERBB2", "GRB7", "MKI67", "TOP2A", "CCND1"],
    "Normal Epithelial": ["KRT5", "KRT14", "KRT17", "ACTA2-AS1", "OXTR", "LTF", "PIP", "SCGB2A2"],
    "CAFs": ["COL1A1", "COL1A2", "COL3A1", "DCN", "LUM", "FBLN1", "PDGFRA", "POSTN"],
    "PVL": ["RGS5", "ACTA2", "MYH11", "TAGLN", "MCAM", "PDGFRB", "NOTCH3", "CSPG4"],
    "Endothelial": ["PECAM1", "VWF", "CDH5", "CLDN5", "PLVAP", "EMCN", "RAMP2", "AQP1"],
    "T-cells": ["CD3E", "CD3D", "CD2", "CD8A", "IL7R", "GZMK", "CCL5", "TRAC"],
    "B-cells": ["MS4A1", "CD79A", "CD19", "BANK1", "CD22", "PAX5", "FCRL5", "TCL1A"],
    "Myeloid": ["CD68", "CD14", "LYZ", "C1QA", "C1QB", "AIF1", "FCGR3A", "CSF1R"],
    "Plasmablasts": ["JCHAIN", "MZB1", "IGKC", "IGHG1", "IGHA1", "XBP1", "SDC1", "TNFRSF17"],
}

COMPARTMENTS = ["tumour", "stroma", "immune", "vascular", "normal duct", "plasma aggregate"]
RARE_COMPARTMENT = "plasma aggregate"

# cell-type proportions per compartment (rows sum to 1 after normalisation)
_COMP_PROPS = {
    "tumour": {"Cancer Epithelial": 0.75, "CAFs": 0.08, "Myeloid": 0.07, "T-cells": 0.05, "Endothelial": 0.05},
    "stroma": {"CAFs": 0.6, "PVL": 0.1, "Endothelial": 0.1, "Myeloid": 0.1, "T-cells": 0.05, "Cancer Epithelial": 0.05},
    "immune": {"T-cells": 0.45, "B-cells": 0.25, "Myeloid": 0.15, "CAFs": 0.1, "Endothelial": 0.05},
    "vascular": {"Endothelial": 0.4, "PVL": 0.3, "CAFs": 0.2, "Myeloid": 0.1},
    "normal duct": {"Normal Epithelial": 0.7, "CAFs": 0.15, "Myeloid": 0.05, "T-cells": 0.05, "PVL": 0.05},
    "plasma aggregate": {"Plasmablasts": 0.7, "B-cells": 0.1, "T-cells": 0.1, "CAFs": 0.1},
}

# (background RGB, nucleus RGB, nuclear fraction, nucleus blur sigma in px)
_COMP_LOOK = {
    "tumour": ((205, 150, 200), (75, 30, 120), 0.42, 1.6),
    "stroma": ((238, 170, 200), (120, 60, 140), 0.08, 1.2),
    "immune": ((215, 160, 205), (45, 20, 95), 0.50, 0.8),
    "vascular": ((230, 120, 140), (110, 50, 120), 0.12, 1.0),
    "normal duct": ((240, 215, 230), (95, 55, 150), 0.22, 1.4),
    "plasma aggregate": ((200, 120, 190), (60, 10, 70), 0.40, 1.1),
}
_BACKGROUND_RGB = (243, 240, 244)


@dataclass
class SyntheticSample:
    """A synthetic section and its single-cell reference (see module docstring)."""

    section: object  # AnnData
    reference: object  # AnnData


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """A smooth random field in [0, 1] of ``shape`` with correlation length ~``scale`` px."""
    small = (max(2, int(np.ceil(shape[0] / scale)) + 2), max(2, int(np.ceil(shape[1] / scale)) + 2))
    base = ndimage.gaussian_filter(rng.standard_normal(small), 1.0)
    zoom = (shape[0] / (small[0] - 2), shape[1] / (small[1] - 2))
    field = ndimage.zoom(base, zoom, order=1)[: shape[0], : shape[1]]
    field = field - field.min()
    return field / max(field.max(), 1e-9)


def gene_names(n_genes: int) -> list[str]:
    """Marker genes of every type first, then background genes ``SYN0001``..."""
    names = [g for t in CELL_TYPES for g in MARKERS[t]]
    names += [f"SYN{i:04d}" for i in range(1, max(0, n_genes - len(names)) + 1)]
    return names[: max(n_genes, len(names))]


def _programmes(rng: np.random.Generator, genes: list[str]) -> pd.DataFrame:
    """Mean relative expression (rows: cell types, columns: genes), rows sum to 1."""
    g = len(genes)
    base = rng.lognormal(mean=0.0, sigma=1.0, size=g)
    prog = np.tile(base, (len(CELL_TYPES), 1)) * rng.lognormal(0.0, 0.35, size=(len(CELL_TYPES), g))
    idx = {name: i for i, name in enumerate(genes)}
    for ti, t in enumerate(CELL_TYPES):
        for m in MARKERS[t]:
            prog[ti, idx[m]] = base.max() * rng.uniform(1.5, 4.0)
        # a type-specific module among background genes, so types differ beyond markers
        n_markers = sum(len(v) for v in MARKERS.values())
        bg = rng.choice(np.arange(n_markers, g), size=max(5, (g - n_markers) // 30), replace=False)
        prog[ti, bg] *= rng.uniform(3, 8, size=len(bg))
    prog /= prog.sum(axis=1, keepdims=True)
    return pd.DataFrame(prog, index=CELL_TYPES, columns=genes)


def _nb(rng: np.random.Generator, mu: np.ndarray, theta: float) -> np.ndarray:
    """Negative binomial counts with mean ``mu`` and inverse dispersion ``theta``."""
    lam = rng.gamma(shape=theta, scale=np.maximum(mu, 1e-12) / theta)
    return rng.poisson(lam)


def _hex_lattice(n_spots: int, spacing: float, margin: float, tissue_frac: float):
    """Rows/cols of a hexagonal lattice big enough for ``n_spots`` spots on tissue."""
    n_total = n_spots / tissue_frac
    n_cols = int(np.ceil(np.sqrt(n_total * 2 / np.sqrt(3))))
    n_rows = int(np.ceil(n_total / n_cols))
    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    x = margin + cols * spacing + (rows % 2) * spacing / 2
    y = margin + rows * spacing * np.sqrt(3) / 2
    return rows, cols, x, y


def make_sample(
    n_spots: int = 2000,
    seed: int = 0,
    *,
    n_genes: int = 300,
    n_cells: int = 1500,
    spacing_px: float = 32.0,
    with_image: bool = True,
    section: str = "SYN1",
    patient: str = "synthetic",
) -> SyntheticSample:
    """Generate the synthetic sample (deterministic for a given ``seed`` and size).

    ``n_spots`` is approximate (the lattice points that fall on the tissue mask are kept, and
    the mask is sized for this count). ``spacing_px`` is the centre-to-centre distance; the spot
    diameter is half of it, as on Visium and legacy ST. With ``with_image=False`` no image is
    drawn (for speed tests with 50,000 spots and more).
    """
    if n_spots < 20:
        raise ValueError(f"n_spots must be at least 20, got {n_spots}")
    if n_genes < 100:
        raise ValueError(f"n_genes must be at least 100 (72 marker genes + background), got {n_genes}")
    rng = np.random.default_rng(seed)
    tissue_frac = 0.62
    margin = spacing_px * 1.5
    rows, cols, x, y = _hex_lattice(n_spots, spacing_px, margin, tissue_frac)
    width = int(np.ceil(x.max() + margin))
    height = int(np.ceil(y.max() + margin))

    # Fields are evaluated on a coarse grid (one cell per ~spot spacing / 2) and upsampled for
    # the image, so cost grows with the number of spots, not pixels.
    cell = spacing_px / 2
    coarse = (int(np.ceil(height / cell)), int(np.ceil(width / cell)))
    corr = max(coarse) / 6.0

    # tissue: an ellipse distorted by a smooth field, then thresholded to keep ~tissue_frac
    yy, xx = np.mgrid[0 : coarse[0], 0 : coarse[1]]
    cy, cx = (coarse[0] - 1) / 2, (coarse[1] - 1) / 2
    r = np.sqrt(((yy - cy) / (coarse[0] / 2)) ** 2 + ((xx - cx) / (coarse[1] / 2)) ** 2)
    tissue_score = 1.0 - r + 0.35 * (_smooth_field(rng, coarse, corr) - 0.5)
    fields = np.stack([_smooth_field(rng, coarse, corr * f) for f in (1.0, 0.8, 0.6, 0.5, 0.7)])
    fields = (fields - fields.mean(axis=(1, 2), keepdims=True)) / (fields.std(axis=(1, 2), keepdims=True) + 1e-9)
    # tumour is the biggest compartment in HER2+ sections; vessels and ducts are smaller
    fields += np.array([0.5, 0.3, 0.0, -0.1, -0.2])[:, None, None]

    # refine 4x with bilinear interpolation so compartment borders are smooth, not blocky
    f = 4
    tissue_score = ndimage.zoom(tissue_score, f, order=1)
    fields = np.stack([ndimage.zoom(fld, f, order=1) for fld in fields])
    comp_coarse = np.argmax(fields, axis=0)  # indices into COMPARTMENTS[:5]
    cell = cell / f
    coarse = comp_coarse.shape
    yy, xx = np.mgrid[0 : coarse[0], 0 : coarse[1]]
    r = np.sqrt(((yy - (coarse[0] - 1) / 2) / (coarse[0] / 2)) ** 2 + ((xx - (coarse[1] - 1) / 2) / (coarse[1] / 2)) ** 2)

    # rare compartment: a few small disks
    n_disks = max(2, int(round(n_spots / 900)))
    rare_mask = np.zeros(coarse, dtype=bool)
    disk_r = max(2.0 * f, np.sqrt(0.03 * tissue_frac * coarse[0] * coarse[1] / n_disks / np.pi))
    inner = np.argwhere(r < 0.6)
    for k in rng.choice(len(inner), size=n_disks, replace=False):
        py, px = inner[k]
        rare_mask |= (yy - py) ** 2 + (xx - px) ** 2 <= disk_r**2
    comp_coarse[rare_mask] = COMPARTMENTS.index(RARE_COMPARTMENT)

    sy = np.clip((y / cell).astype(int), 0, coarse[0] - 1)
    sx = np.clip((x / cell).astype(int), 0, coarse[1] - 1)
    spot_score = tissue_score[sy, sx]
    thr = np.quantile(spot_score, 1 - min(0.999, n_spots / len(x)))
    on = spot_score >= thr
    rows, cols, x, y, sy, sx = rows[on], cols[on], x[on], y[on], sy[on], sx[on]
    tissue_thr = thr
    comp_idx = comp_coarse[sy, sx]
    compartment = np.array(COMPARTMENTS)[comp_idx]

    # expression
    genes = gene_names(n_genes)
    prog = _programmes(rng, genes)
    props = np.zeros((len(x), len(CELL_TYPES)))
    for ci, c in enumerate(COMPARTMENTS):
        m = comp_idx == ci
        if not m.any():
            continue
        alpha = np.array([_COMP_PROPS[c].get(t, 0.01) for t in CELL_TYPES]) * 40
        props[m] = rng.dirichlet(alpha, size=int(m.sum()))
    lib = rng.lognormal(np.log(6000), 0.35, size=len(x))
    mu = (props @ prog.to_numpy()) * lib[:, None]
    counts = _nb(rng, mu, theta=8.0).astype(np.float32)

    image = None
    if with_image:
        image = _render_he(rng, (height, width), comp_coarse, tissue_score >= tissue_thr, cell)

    spot_ids = [f"{c}x{r}" for r, c in zip(rows, cols, strict=True)]
    adata = make_section(
        sp.csr_matrix(counts),
        genes,
        spot_ids,
        np.column_stack([x, y]),
        section=section,
        patient=patient,
        array_row=rows,
        array_col=cols,
        image=image,
        image_shape=(height, width, 3),
        spot_diameter_fullres=spacing_px / 2,
        keep_fullres_in_memory=True,
    )
    adata.obs["true_compartment"] = pd.Categorical(compartment, categories=COMPARTMENTS)
    adata.obsm["true_proportions"] = pd.DataFrame(props, index=adata.obs_names, columns=CELL_TYPES)
    adata.uns["synthetic"] = {
        "seed": int(seed),
        "note": "SYNTHETIC data generated by napari_scr2st.data.synthetic.make_sample; not a real tissue",
        "rare_compartment": RARE_COMPARTMENT,
    }

    reference = _make_reference(rng, prog, n_cells)
    return SyntheticSample(section=adata, reference=reference)


def _make_reference(rng: np.random.Generator, prog: pd.DataFrame, n_cells: int):
    import anndata as ad

    # unbalanced type frequencies, as in a real atlas; every type present
    freq = np.array([0.25, 0.05, 0.18, 0.06, 0.08, 0.2, 0.06, 0.09, 0.03])
    n_per = np.maximum(10, np.round(freq / freq.sum() * n_cells).astype(int))
    labels = np.repeat(CELL_TYPES, n_per)
    lib = rng.lognormal(np.log(3000), 0.5, size=len(labels))
    mu = prog.loc[labels].to_numpy() * lib[:, None]
    counts = _nb(rng, mu, theta=3.0).astype(np.float32)
    obs = pd.DataFrame(
        {"celltype_major": pd.Categorical(labels, categories=CELL_TYPES)},
        index=[f"cell{i:05d}" for i in range(len(labels))],
    )
    ref = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=prog.columns))
    ref.uns["synthetic"] = {"note": "SYNTHETIC single-cell reference matching the synthetic sample"}
    return ref


def _render_he(rng, shape, comp_coarse, tissue_coarse, cell) -> np.ndarray:
    """Draw an H&E-like RGB image of ``shape`` from the coarse compartment map."""
    h, w = shape
    # nearest-neighbour upsampling of the coarse maps, with a jittered boundary
    iy = np.clip((np.arange(h) / cell).astype(int), 0, comp_coarse.shape[0] - 1)
    ix = np.clip((np.arange(w) / cell).astype(int), 0, comp_coarse.shape[1] - 1)
    comp = comp_coarse[iy[:, None], ix[None, :]]
    tissue = tissue_coarse[iy[:, None], ix[None, :]]

    noise = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 1.2)
    noise /= noise.std() + 1e-6
    bgc = np.array([_COMP_LOOK[c][0] for c in COMPARTMENTS], dtype=np.float32)
    nuc = np.array([_COMP_LOOK[c][1] for c in COMPARTMENTS], dtype=np.float32)
    frac = np.array([_COMP_LOOK[c][2] for c in COMPARTMENTS], dtype=np.float32)
    # threshold so that the nuclear fraction of each compartment matches its look
    from scipy.stats import norm

    thr = norm.ppf(1 - frac)
    nuclei = noise > thr[comp]
    fibre = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), (0.8, 4.0))
    img = bgc[comp] + 10.0 * fibre[..., None]
    img = np.where(nuclei[..., None], nuc[comp] + 8.0 * noise[..., None], img)
    # lumen holes in normal ducts
    duct = comp == COMPARTMENTS.index("normal duct")
    lumen = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 6.0)
    img[duct & (lumen > np.quantile(lumen, 0.85))] = (248, 244, 246)
    img[~tissue] = np.array(_BACKGROUND_RGB, dtype=np.float32) + 2.0 * noise[~tissue][:, None]
    return np.clip(img, 0, 255).astype(np.uint8)
