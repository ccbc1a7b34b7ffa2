import numpy as np
import pytest

from napari_scr2st.data import make_sample
from napari_scr2st.layers import image_layer, image_pyramid, section_layers, spots_layer


@pytest.fixture(scope="module")
def section():
    return make_sample(n_spots=300, seed=0).section


def test_section_layers_are_image_and_points(section):
    layers = section_layers(section)
    assert [t for _, _, t in layers] == ["image", "points"]
    (img, ikw, _), (pts, pkw, _) = layers
    assert ikw["rgb"] and img.shape[2] == 3
    # napari (y, x) order: the first spot's y is obsm x-column 1
    np.testing.assert_allclose(pts[:, 0], section.obsm["spatial"][:, 1])
    assert pkw["size"] == pytest.approx(16.0)
    assert len(pkw["features"]) == section.n_obs
    np.testing.assert_allclose(pkw["features"]["total_counts"], np.asarray(section.X.sum(1)).ravel())


def test_spots_coloured_by_a_feature(section):
    section = section.copy()
    section.obs["cell_type"] = section.obs["true_compartment"].astype(str)
    _, kw, _ = spots_layer(section, color_by="cell_type")
    assert kw["face_color"] == "cell_type"
    assert "cell_type" in kw["features"]


def test_pyramid_and_multiscale_choice():
    big = np.zeros((5000, 4200, 3), np.uint8)
    levels = image_pyramid(big)
    assert [lv.shape[0] for lv in levels] == [5000, 2500, 1250]
    assert all(lv.shape[2] == 3 for lv in levels)


def test_lowres_only_section_is_scaled_to_fullres(section):
    s = section.copy()
    s.uns["spatial"]["SYN1"]["images"].pop("hires")
    data, kw, _ = image_layer(s)
    sf = s.uns["spatial"]["SYN1"]["scalefactors"]["tissue_lowres_scalef"]
    assert kw["scale"] == (1 / sf, 1 / sf)
    assert data is s.uns["spatial"]["SYN1"]["images"]["lowres"]
