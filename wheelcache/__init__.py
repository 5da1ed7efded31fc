"""wheelcache: fetch PyTorch wheels and their whole dependency closure for a target machine.

The public API is small: :func:`fetch` does the whole job for a :class:`FetchRequest`; the
value objects and the exception tree are re-exported here.
"""

from __future__ import annotations

__version__ = "0.1.0"
