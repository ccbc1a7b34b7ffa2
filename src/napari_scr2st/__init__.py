"""napari-scr2st: single-cell guided active sampling and expression prediction for ST.

The core (``data``, ``io``, ``features``, ``reference``, ``sampling``, ``model``,
``evaluation``) imports without napari or Qt; ``napari_scr2st.napari`` is the plugin layer.
"""

__version__ = "0.1.0"
