"""``python -m napari_scr2st.cli`` = the ``scr2st`` command."""

if __name__ == "__main__":
    import sys

    from . import main

    sys.exit(main())
