"""Test helper: write a tiny synthetic 10x Space Ranger ``outs/`` folder."""

from __future__ import annotations

from pathlib import Path


def write_spaceranger_outs(
    folder: Path,
    *,
    library: str = "lib1",
    positions_format: str = "new",
    fullres_wh: tuple[int, int] = (1000, 800),
    hires_scalef: float = 0.5,
    lowres_scalef: float = 0.15,
    spot_diameter_fullres: float = 60.0,
    write_fullres: bool = False,
) -> dict:
    """Write ``folder/outs`` as Space Ranger would (v3 h5, positions, scale factors, images).

    Spots lie on a hexagonal lattice inside a non-square full-resolution frame; a dark disk is
    painted at every in-tissue spot in all images so tests can check the coordinate frame.
    Returns the ground truth (barcodes, genes, dense counts, full-res xy, array row/col).
    """
    import json

    import h5py
    import numpy as np
    import pandas as pd
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
    rng = np.random.default_rng(0)
    dense = rng.integers(0, 6, size=(int(keep.sum()), len(genes))).astype(np.int32)
    dense[0] = [7, 0, 0, 3, 1]

    # 10x v3 h5: genes x barcodes CSC == barcodes x genes CSR
    import scipy.sparse as sp

    m = sp.csr_matrix(dense)
    with h5py.File(outs / "filtered_feature_bc_matrix.h5", "w") as f:
        f.attrs["library_ids"] = np.array([library.encode()])
        f.attrs["chemistry_description"] = "Spatial 3' v1"
        f.attrs["software_version"] = "spaceranger-2.0.0"
        g = f.create_group("matrix")
        g.create_dataset("data", data=m.data.astype(np.int32))
        g.create_dataset("indices", data=m.indices.astype(np.int64))
        g.create_dataset("indptr", data=m.indptr.astype(np.int64))
        g.create_dataset("shape", data=np.array([len(genes), int(keep.sum())], dtype=np.int32))
        g.create_dataset(
            "barcodes",
            data=np.array([b.encode() for b, k in zip(barcodes, keep, strict=True) if k]),
        )
        ft = g.create_group("features")
        ft.create_dataset(
            "id", data=np.array([f"ENSG{i:011d}".encode() for i in range(len(genes))])
        )
        ft.create_dataset("name", data=np.array([s.encode() for s in genes]))
        ft.create_dataset("feature_type", data=np.array([b"Gene Expression"] * len(genes)))
        ft.create_dataset("genome", data=np.array([b"GRCh38"] * len(genes)))

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
    if positions_format == "new":
        pos.to_csv(outs / "spatial" / "tissue_positions.csv", index=False)
    else:
        pos.to_csv(outs / "spatial" / "tissue_positions_list.csv", index=False, header=False)
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

    def image(scale: float) -> Image.Image:
        im = Image.new("RGB", (round(W * scale), round(H * scale)), (235, 230, 240))
        d = ImageDraw.Draw(im)
        rad = spot_diameter_fullres * scale / 2
        for x, y, t in zip(xs, ys, in_tissue, strict=True):
            if t:
                d.ellipse(
                    [x * scale - rad, y * scale - rad, x * scale + rad, y * scale + rad],
                    fill=(90, 40, 110),
                )
        return im

    image(hires_scalef).save(outs / "spatial" / "tissue_hires_image.png")
    image(lowres_scalef).save(outs / "spatial" / "tissue_lowres_image.png")
    fullres = None
    if write_fullres:
        fullres = folder / "fullres.tif"
        image(1.0).save(fullres)
    xy = np.column_stack([np.rint(xs), np.rint(ys)])[keep]
    return {
        "outs": outs,
        "library": library,
        "barcodes": [b for b, k in zip(barcodes, keep, strict=True) if k],
        "genes": genes,
        "counts": dense,
        "xy_fullres": xy,
        "array_row": np.asarray(rows)[keep],
        "array_col": np.asarray(cols)[keep],
        "fullres": fullres,
        "hires_scalef": hires_scalef,
        "lowres_scalef": lowres_scalef,
        "spot_diameter_fullres": spot_diameter_fullres,
    }
