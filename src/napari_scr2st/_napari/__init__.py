"""The napari layer of the plugin: reader, sample data and widget glue (imports napari/Qt).

Everything here is thin: it calls the Qt-free core and returns layer data or wires events.
"""
