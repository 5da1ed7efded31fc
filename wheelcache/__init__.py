"""wheelcache: fetch PyTorch wheels and their whole dependency closure for a target machine.

The public API — everything else is internal and may change between releases::

    from wheelcache import Cache, FetchRequest, fetch, http_session, make_target

    target = make_target(python="3.9", platform="win_amd64", variant="cu118")
    request = FetchRequest(target=target, requirements=("torch==2.4.0",), torch_version=None,
                           torch_index="https://…/whl/{variant}", index_urls=("https://…/simple",))
    with http_session(None, offline=False) as http:
        result = fetch(request, Cache(path), http=http)
    print(result.install_requirements_command)

- :func:`fetch` resolves, downloads, verifies and stores; :class:`FetchRequest` says what and
  for which target, :class:`FetchResult` (of :class:`FetchedFile`) what came out.
- :class:`Target` and :func:`make_target` describe the machine the wheels are for.
- :func:`read_requirement_files` reads pip requirement files (``-r``/``-c``) for
  ``FetchRequest.files``; ``FetchRequest.lock`` names a PEP 751 lock to fetch as it is.
- :class:`Cache` is the content-addressed cache; :class:`Http`, :class:`HttpSettings` and
  :func:`http_session` the one HTTP client a job uses.
- :class:`WheelcacheError` roots the exception tree (:mod:`wheelcache.errors` draws it);
  every subclass is exported here too.

Names are imported on first use, so ``import wheelcache`` (and ``wheelcache --version``) stays
cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_ERRORS = (
    "BundleError",
    "CacheError",
    "ConnectionFault",
    "DownloadError",
    "HashMismatchError",
    "HashPinError",
    "IncompleteDownloadError",
    "IndexPageError",
    "IndexUnreachableError",
    "LockFileError",
    "MetadataError",
    "RequirementError",
    "RequirementsFileError",
    "ResolutionError",
    "ResponseTooLargeError",
    "TargetError",
    "WheelcacheError",
)
#: Public name -> the module that owns it.
_EXPORTS: dict[str, str] = {
    "fetch": "wheelcache.jobs.fetch",
    "FetchRequest": "wheelcache.jobs.fetch",
    "FetchResult": "wheelcache.jobs.fetch",
    "FetchedFile": "wheelcache.jobs.fetch",
    "Target": "wheelcache.core.target",
    "make_target": "wheelcache.core.target",
    "Cache": "wheelcache.store.cache",
    "Http": "wheelcache.net.client",
    "HttpSettings": "wheelcache.net.client",
    "http_session": "wheelcache.net.client",
    "read_requirement_files": "wheelcache.reqfiles",
    **{name: "wheelcache.errors" for name in _ERRORS},
}

__all__ = [
    "__version__",
    "BundleError",
    "Cache",
    "CacheError",
    "ConnectionFault",
    "DownloadError",
    "FetchRequest",
    "FetchResult",
    "FetchedFile",
    "HashMismatchError",
    "HashPinError",
    "Http",
    "HttpSettings",
    "IncompleteDownloadError",
    "IndexPageError",
    "IndexUnreachableError",
    "LockFileError",
    "MetadataError",
    "RequirementError",
    "RequirementsFileError",
    "ResolutionError",
    "ResponseTooLargeError",
    "Target",
    "TargetError",
    "WheelcacheError",
    "fetch",
    "http_session",
    "make_target",
    "read_requirement_files",
]

if TYPE_CHECKING:
    from wheelcache.core.target import Target, make_target
    from wheelcache.errors import (
        BundleError,
        CacheError,
        ConnectionFault,
        DownloadError,
        HashMismatchError,
        HashPinError,
        IncompleteDownloadError,
        IndexPageError,
        IndexUnreachableError,
        LockFileError,
        MetadataError,
        RequirementError,
        RequirementsFileError,
        ResolutionError,
        ResponseTooLargeError,
        TargetError,
        WheelcacheError,
    )
    from wheelcache.jobs.fetch import FetchedFile, FetchRequest, FetchResult, fetch
    from wheelcache.net.client import Http, HttpSettings, http_session
    from wheelcache.reqfiles import read_requirement_files
    from wheelcache.store.cache import Cache


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wheelcache' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
