"""`scr2st select --image` on a Space Ranger run: the original full-resolution H&E is used and the
exported centres are Space Ranger's own full-resolution coordinates."""

import numpy as np
import pandas as pd
from _spaceranger import write_spaceranger_outs

from napari_scr2st.cli import main


def test_select_names_the_original_fullres_image_of_a_space_ranger_run(tmp_path):
    truth = write_spaceranger_outs(tmp_path / "s", write_fullres=True)
    out = tmp_path / "r0.csv"
    assert main(["select", str(truth["outs"]), "--image", str(truth["fullres"]), "--encoder", "patch-stats",
                 "--sampler", "grid", "--budget", "5", "--rounds", "1", "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out)
    xy = dict(zip(truth["barcodes"], map(tuple, np.asarray(truth["xy_fullres"], dtype=float)), strict=True))
    assert len(df) == 5
    for sid, x, y in zip(df["spot_id"], df["pixel_x"], df["pixel_y"], strict=True):
        assert np.allclose((x, y), xy[sid])
