"""``python -m repsim.book``: execute the chapters and build the book (see ``runner``)."""

import sys

from repsim.book.runner import main

sys.exit(main())
