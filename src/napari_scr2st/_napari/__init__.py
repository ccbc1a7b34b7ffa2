"""The napari layer of the plugin: reader, sample data and widget glue (imports napari/Qt).

Everything here is thin: it calls the Qt-free core and returns layer data or wires events.
Importing it changes nothing process-wide; torch work that creates optimisers under napari's
software OpenGL wraps its first optimiser in :func:`napari_scr2st.torch_runtime.triton_blocked`.
"""
