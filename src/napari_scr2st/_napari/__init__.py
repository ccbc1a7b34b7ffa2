"""The napari layer of the plugin: reader, sample data, docks and their wiring (imports napari/Qt).

Everything here is thin: docks drive the core's
:class:`~napari_scr2st.session.AcquisitionSession` and draw its layers. Importing this package
changes nothing global (torch work guards itself, see :mod:`napari_scr2st.torch_runtime`).
"""
