"""Test helpers: write tiny synthetic 10x Space Ranger outputs in the exact 10x layouts.

- :func:`write_spaceranger_outs`: a Visium ``outs/`` folder (Space Ranger 1.x, 2.x or 3.x
  positions; ``.h5`` or MEX matrix, filtered or raw only; probe-style features with protein
  rows; CytAssist image);
- :func:`write_visium_hd_outs`: a Visium HD ``outs/`` with ``binned_outputs/square_NNNum``.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

GEX = "Gene Expression"


def write_10x_h5(
    path: Path,
    counts: np.ndarray,
    barcodes: list[str],
    ids: list[str],
    names: list[str],
    types: list[str],
    *,
    library: str,
    gene_ids: list[str] | None = None,
) -> None:
    """A Cell/Space Ranger v3 ``.h5`` (``matrix/`` group, features x barcodes CSC).

    ``gene_ids`` given: a probe-barcode style matrix (``features/id`` = probe ids,
    ``features/gene_id`` = gene ids).
    """
    import h5py

    m = sp.csr_matrix(counts)  # barcodes x features CSR == features x barcodes CSC
    with h5py.File(path, "w") as f:
        f.attrs["library_ids"] = np.array([library.encode()])
        f.attrs["chemistry_description"] = "Spatial 3' v1"
        f.attrs["software_version"] = "spaceranger-2.0.0"
        g = f.create_group("matrix")
        g.create_dataset("data", data=m.data.astype(np.int32))
        g.create_dataset("indices", data=m.indices.astype(np.int64))
        g.create_dataset("indptr", data=m.indptr.astype(np.int64))
        g.create_dataset("shape", data=np.array([counts.shape[1], counts.shape[0]], dtype=np.int32))
        g.create_dataset("barcodes", data=np.array([b.encode() for b in barcodes]))
        ft = g.create_group("features")
        ft.create_dataset("id", data=np.array([s.encode() for s in ids]))
        ft.create_dataset("name", data=np.array([s.encode() for s in names]))
        ft.create_dataset("feature_type", data=np.array([s.encode() for s in types]))
        ft.create_dataset("genome", data=np.array([b"GRCh38"] * len(ids)))
        tags = [b"genome"]
        if gene_ids is not None:
            ft.create_dataset("gene_id", data=np.array([s.encode() for s in gene_ids]))
            tags.append(b"gene_id")
        ft.create_dataset("_all_tag_keys", data=np.array(tags))


def write_10x_mtx(
    folder: Path,
    counts: np.ndarray,
    barcodes: list[str],
    ids: list[str],
    names: list[str],
    types: list[str],
) -> None:
    """A MEX folder: ``matrix.mtx.gz`` (features x barcodes), ``features.tsv.gz``, ``barcodes.tsv.gz``."""
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / "matrix.mtx"
    scipy.io.mmwrite(plain, sp.coo_matrix(counts.T.astype(np.int64)))
    with open(plain, "rb") as src, gzip.open(folder / "matrix.mtx.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain.unlink()
    with gzip.open(folder / "features.tsv.gz", "wt") as fh:
        fh.writelines(f"{i}\t{n}\t{t}\n" for i, n, t in zip(ids, names, types, strict=True))
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as fh:
        fh.writelines(f"{b}\n" for b in barcodes)


def _write_matrix(
    folder: Path,
    kind: str,
    matrix: str,
    counts,
    barcodes,
    ids,
    names,
    types,
    *,
    library,
    gene_ids=None,
):
    if matrix == "h5":
        write_10x_h5(
            folder / f"{kind}_feature_bc_matrix.h5",
            counts,
            barcodes,
            ids,
            names,
            types,
            library=library,
            gene_ids=gene_ids,
        )
    elif matrix == "mtx":
        write_10x_mtx(folder / f"{kind}_feature_bc_matrix", counts, barcodes, ids, names, types)
    else:
        raise ValueError(f"matrix must be 'h5' or 'mtx', got {matrix!r}")


def _write_positions(spatial: Path, pos: pd.DataFrame, positions_format: str) -> Path:
    if positions_format == "list":  # Space Ranger 1.x: no header
        out = spatial / "tissue_positions_list.csv"
        pos.to_csv(out, index=False, header=False)
    elif positions_format == "csv":  # 2.x
        out = spatial / "tissue_positions.csv"
        pos.to_csv(out, index=False)
    elif positions_format == "parquet":  # 3.x
        out = spatial / "tissue_positions.parquet"
        pos.to_parquet(out, index=False)
    else:
        raise ValueError(
            f"positions_format must be 'list', 'csv' or 'parquet', got {positions_format!r}"
        )
    return out


def write_spaceranger_outs(
    folder: Path,
    *,
    library: str = "lib1",
    positions_format: str = "csv",
    matrix: str = "h5",
    filtered: bool = True,
    probe: bool = False,
    cytassist: bool = False,
    fullres_wh: tuple[int, int] = (1000, 800),
    hires_scalef: float = 0.5,
    lowres_scalef: float = 0.15,
    spot_diameter_fullres: float = 60.0,
    write_fullres: bool = False,
) -> dict:
    """Write ``folder/outs`` as Space Ranger would (matrix, positions, scale factors, images).

    Spots lie on a hexagonal lattice inside a non-square full-resolution frame; a dark disk is
    painted at every in-tissue spot in all images so tests can check the coordinate frame.
    ``positions_format``: ``"list"`` (1.x ``tissue_positions_list.csv``, no header), ``"csv"``
    (2.x ``tissue_positions.csv``), ``"parquet"`` (3.x ``tissue_positions.parquet``).
    ``matrix``: ``"h5"`` or ``"mtx"``; ``filtered=False`` writes only the raw matrix (every
    barcode, two off tissue). ``probe``: probe ids and two ``Antibody Capture`` rows (CytAssist
    gene + protein). Returns the ground truth (in-tissue barcodes, Gene Expression genes, their
    dense counts, Space Ranger full-res xy, array row/col).
    """
    from PIL import Image, ImageDraw

    outs = folder / "outs"
    (outs / "spatial").mkdir(parents=True, exist_ok=True)
    W, H = fullres_wh
    rows, cols, xs, ys = [], [], [], []
    for r in range(4):
        for c in range(r % 2, 12, 2):
            rows.append(r)
            cols.append(c)
            xs.append(150.0 + 50.0 * c)  # pixel column (x)
            ys.append(200.0 + 86.6 * r)  # pixel row (y)
    n = len(rows)
    barcodes = [f"AAAC{i:04d}-1" for i in range(n)]
    in_tissue = np.ones(n, dtype=int)
    in_tissue[-2:] = 0  # two off-tissue spots: in the positions file, not in the filtered matrix
    keep = in_tissue == 1
    genes = ["GENE_A", "GENE_B", "GENE_C", "GENE_D", "GENE_A"]  # a duplicated symbol
    gene_ids = [f"ENSG{i:011d}" for i in range(len(genes))]
    ids = (
        [f"{g}|{s}|probe{i}" for i, (g, s) in enumerate(zip(gene_ids, genes, strict=True))]
        if probe
        else gene_ids
    )
    names, types = list(genes), [GEX] * len(genes)
    if probe:
        ids, names, types = (
            ids + ["CD3E_ab", "CD8A_ab"],
            names + ["CD3E", "CD8A"],
            types + ["Antibody Capture"] * 2,
        )
    rng = np.random.default_rng(0)
    dense_all = rng.integers(0, 6, size=(n, len(ids))).astype(np.int32)
    first = int(np.flatnonzero(keep)[0])
    dense_all[first, : len(genes)] = [7, 0, 0, 3, 1]
    cols_gex = [i for i, t in enumerate(types) if t == GEX]
    probe_gene_ids = gene_ids + ["", ""] if probe else None
    kind, rows_written = ("filtered", keep) if filtered else ("raw", np.ones(n, bool))
    _write_matrix(
        outs,
        kind,
        matrix,
        dense_all[rows_written],
        [b for b, k in zip(barcodes, rows_written, strict=True) if k],
        ids,
        names,
        types,
        library=library,
        gene_ids=probe_gene_ids,
    )

    pos = pd.DataFrame(
        {
            "barcode": barcodes,
            "in_tissue": in_tissue,
            "array_row": rows,
            "array_col": cols,
            "pxl_row_in_fullres": np.rint(ys).astype(int),
            "pxl_col_in_fullres": np.rint(xs).astype(int),
        }
    )
    pos = pos.iloc[::-1]  # order differs from the matrix on purpose
    positions = _write_positions(outs / "spatial", pos, positions_format)
    (outs / "spatial" / "scalefactors_json.json").write_text(
        json.dumps(
            {
                "spot_diameter_fullres": spot_diameter_fullres,
                "fiducial_diameter_fullres": spot_diameter_fullres * 1.5,
                "tissue_hires_scalef": hires_scalef,
                "tissue_lowres_scalef": lowres_scalef,
            }
        )
    )

    def image(scale: float, fill=(90, 40, 110)) -> Image.Image:
        im = Image.new("RGB", (round(W * scale), round(H * scale)), (235, 230, 240))
        d = ImageDraw.Draw(im)
        rad = spot_diameter_fullres * scale / 2
        for x, y, t in zip(xs, ys, in_tissue, strict=True):
            if t:
                d.ellipse(
                    [x * scale - rad, y * scale - rad, x * scale + rad, y * scale + rad], fill=fill
                )
        return im

    image(hires_scalef).save(outs / "spatial" / "tissue_hires_image.png")
    image(lowres_scalef).save(outs / "spatial" / "tissue_lowres_image.png")
    if cytassist:
        import tifffile

        tifffile.imwrite(
            outs / "spatial" / "cytassist_image.tiff", np.asarray(image(0.3, fill=(20, 20, 20)))
        )
    fullres = None
    if write_fullres:
        fullres = folder / "fullres.tif"
        image(1.0).save(fullres)
    return {
        "outs": outs,
        "library": library,
        "positions": positions,
        "barcodes": [b for b, k in zip(barcodes, keep, strict=True) if k],
        "genes": genes,
        "counts": dense_all[keep][:, cols_gex],
        "xy_fullres": np.column_stack([np.rint(xs), np.rint(ys)])[keep],
        "array_row": np.asarray(rows)[keep],
        "array_col": np.asarray(cols)[keep],
        "n_barcodes": n,
        "fullres": fullres,
        "hires_scalef": hires_scalef,
        "lowres_scalef": lowres_scalef,
        "spot_diameter_fullres": spot_diameter_fullres,
    }


def write_visium_hd_outs(
    folder: Path,
    *,
    library: str = "hd1",
    bins: tuple[int, ...] = (2, 8, 16),
    microns_per_pixel: float = 0.5,
    fullres_wh: tuple[int, int] = (240, 160),
    hires_scalef: float = 0.5,
    lowres_scalef: float = 0.2,
) -> dict:
    """Write ``folder/outs`` of a Visium HD run: ``binned_outputs/square_NNNum/`` per bin size
    (filtered ``.h5``, ``spatial/tissue_positions.parquet`` + scale factors) and the images in
    ``outs/spatial``. The tissue is the centre rectangle (dark in the images); bins whose centre
    lies in it are in tissue. Returns ``{"outs", "library", "bins": {size: truth}}``."""
    from PIL import Image, ImageDraw

    outs = folder / "outs"
    (outs / "spatial").mkdir(parents=True, exist_ok=True)
    W, H = fullres_wh
    box = (0.2 * W, 0.25 * H, 0.8 * W, 0.75 * H)  # x0, y0, x1, y1 of the tissue
    genes = ["GENE_A", "GENE_B", "GENE_C"]
    rng = np.random.default_rng(1)
    truth = {}
    sf_common = {
        "tissue_hires_scalef": hires_scalef,
        "tissue_lowres_scalef": lowres_scalef,
        "regist_target_img_scalef": hires_scalef,
    }
    for b in bins:
        px = b / microns_per_pixel
        nr, nc = int(H // px), int(W // px)
        r, c = np.divmod(np.arange(nr * nc), nc)
        x, y = (c + 0.5) * px, (r + 0.5) * px
        inside = (x >= box[0]) & (x < box[2]) & (y >= box[1]) & (y < box[3])
        barcodes = np.char.add(
            np.char.add(np.char.add(f"s_{b:03d}um_", np.char.zfill(r.astype(str), 5)), "_"),
            np.char.add(np.char.zfill(c.astype(str), 5), "-1"),
        )
        d = outs / "binned_outputs" / f"square_{b:03d}um"
        (d / "spatial").mkdir(parents=True, exist_ok=True)
        counts = rng.integers(0, 4, size=(int(inside.sum()), len(genes))).astype(np.int32)
        write_10x_h5(
            d / "filtered_feature_bc_matrix.h5",
            counts,
            list(barcodes[inside]),
            [f"ENSG{i:011d}" for i in range(len(genes))],
            genes,
            [GEX] * len(genes),
            library=library,
        )
        pd.DataFrame(
            {
                "barcode": barcodes,
                "in_tissue": inside.astype(np.int32),
                "array_row": r,
                "array_col": c,
                "pxl_row_in_fullres": y,
                "pxl_col_in_fullres": x,
            }
        ).to_parquet(d / "spatial" / "tissue_positions.parquet", index=False)
        (d / "spatial" / "scalefactors_json.json").write_text(
            json.dumps(
                {
                    **sf_common,
                    "spot_diameter_fullres": px,
                    "bin_size_um": float(b),
                    "microns_per_pixel": microns_per_pixel,
                    "fiducial_diameter_fullres": 10 * px,
                }
            )
        )
        truth[b] = {
            "barcodes": list(barcodes[inside]),
            "xy_fullres": np.column_stack([x, y])[inside],
            "array_row": r[inside],
            "array_col": c[inside],
            "counts": counts,
            "bin_px": px,
            "n_bins": nr * nc,
        }
    (outs / "spatial" / "scalefactors_json.json").write_text(
        json.dumps(
            {
                **sf_common,
                "spot_diameter_fullres": 2 / microns_per_pixel,
                "microns_per_pixel": microns_per_pixel,
            }
        )
    )

    def image(scale: float) -> Image.Image:
        im = Image.new("RGB", (round(W * scale), round(H * scale)), (235, 230, 240))
        ImageDraw.Draw(im).rectangle([v * scale for v in box], fill=(90, 40, 110))
        return im

    image(hires_scalef).save(outs / "spatial" / "tissue_hires_image.png")
    image(lowres_scalef).save(outs / "spatial" / "tissue_lowres_image.png")
    return {"outs": outs, "library": library, "bins": truth, "genes": genes}
