"""The napari layer of the plugin: reader, sample data and widget glue (imports napari/Qt).

Everything here is thin: it calls the Qt-free core and returns layer data or wires events.
"""

from ._core_adapter import guard_triton as _guard_triton

# torch + Triton + Mesa's software OpenGL crash together (see guard_triton); napari has its GL
# context before any plugin module is imported, so checking here covers the usual order.
_guard_triton()
