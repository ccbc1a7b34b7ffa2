"""Plugin settings (npe2 configurations read through napari), manifest widgets and menus."""

import pytest


def test_plugin_settings_feed_the_dock_defaults(plugin_settings, npe2pm, make_napari_viewer):
    from npe2 import PluginManifest

    from napari_scr2st._napari._dock_kit import plugin_defaults

    pm = PluginManifest.from_distribution("napari-scr2st")
    npe2pm.register(pm)
    from napari.settings import get_plugin_settings

    s = get_plugin_settings("napari-scr2st")
    assert s.sampling.budget == "15%" and s.training.device == "auto"
    s.sampling.budget = "40"
    s.sampling.weight_sp = 2.5
    s.training.device = "cpu"
    d, t = plugin_defaults()
    assert (d.budget, d.w_sp, t.device) == ("40", 2.5, "cpu")

    from napari_scr2st._napari._sampling_widget import SamplingWidget
    from napari_scr2st._napari._training_widget import TrainingWidget

    viewer = make_napari_viewer()
    w = SamplingWidget(viewer)
    assert w.budget_text() == "40" and w.sliders["w_sp"].value() == pytest.approx(2.5)
    t = TrainingWidget(viewer)
    assert t.device_combo.currentText() == "cpu"


def test_settings_fall_back_when_unavailable(monkeypatch):
    import napari.settings

    from napari_scr2st._napari._dock_kit import plugin_defaults
    from napari_scr2st.config import SamplingSettings, TrainingSettings

    def boom(*a, **k):
        raise RuntimeError("no settings")

    monkeypatch.setattr(napari.settings, "get_plugin_settings", boom)
    d, t = plugin_defaults()
    assert (d, t) == (SamplingSettings(), TrainingSettings()) and d.budget == "15%"


def test_manifest_contributes_docks_menus_and_configurations():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-scr2st")
    names = {w.display_name for w in pm.contributions.widgets}
    assert names == {"SCR2-ST workflow", "Spot sampling", "Train SCR2Net", "Retrieval inspector", "Expression and cell-type maps",
                     "Export and import"}
    assert "napari/layers/annotate" in pm.contributions.menus
    assert {c.key for c in pm.contributions.sample_data} >= {"synthetic", "her2st_c3"}
    assert set(pm.contributions.configurations) == {"sampling", "training"}
    pm.validate_imports()


def test_every_dock_opens_empty(make_napari_viewer):
    """Docks open before any section exists, and tell the user what to do."""
    viewer = make_napari_viewer()
    for name in ("SCR2-ST workflow", "Spot sampling", "Train SCR2Net", "Retrieval inspector", "Expression and cell-type maps",
                 "Export and import"):
        _, w = viewer.window.add_plugin_dock_widget("napari-scr2st", name)
        assert w.session is None


def test_sampling_dock_starts_on_the_configured_sampler(make_napari_viewer):
    """The dock's sampler, and the session it binds, start on SamplingSettings().sampler (the
    default the CLI and the demo use), not on the first entry of the list."""
    from napari_scr2st._napari._sampling_widget import SamplingWidget
    from napari_scr2st._napari._sessions import get_session
    from napari_scr2st.config import SAMPLERS, SamplingSettings
    from napari_scr2st.data import make_sample

    default = SamplingSettings().sampler
    assert SAMPLERS[0] != default  # otherwise this test could not fail
    viewer = make_napari_viewer()
    a = make_sample(n_spots=60, seed=0).section
    layer = viewer.add_points(a.obsm["spatial"][:, ::-1], name="spots", metadata={"adata": a})
    w = SamplingWidget(viewer)
    assert w.sampler_combo.currentData() == default
    session = get_session(layer)
    w._apply_settings_to(session)
    assert session.sampling.sampler == default
