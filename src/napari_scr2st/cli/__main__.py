"""``python -m napari_scr2st.cli`` = the ``scr2st`` command."""

import sys

from . import main

sys.exit(main())
