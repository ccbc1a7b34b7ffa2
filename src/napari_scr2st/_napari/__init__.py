"""The napari layer of the plugin: reader, sample data, docks and their wiring (imports napari/Qt).

Everything here is thin: docks drive the core's
:class:`~napari_scr2st.session.AcquisitionSession` and draw its layers.
"""
