"""Why a resolution failed, in a few lines that name the real culprit.

resolvelib reports the requirements of its *last* conflict.  Those are often the innocent side:
torch 2.5.1 with its companions for cp313 ends in a conflict on torch, while the real cause is
that torchvision 0.20.1 and torchaudio 2.5.1 — the releases that go with torch 2.5.1 — have no
cp313 wheel (issue 15).  So the explanation is built from what the provider learnt:

* a requirement that nothing satisfies *on its own* is followed down to the project that has no
  usable file (the provider records which requirement made each candidate unusable), and the
  chain of requirements from the user to it is shown;
* for a pinned torch, each requested companion is checked for a release that goes with it;
* what remains is a true conflict: the requirements on one project that exclude each other,
  each with who asked for it.

The summary is a few lines; :attr:`ResolutionError.details` has every chain (``-v`` shows it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from wheelcache.core.companions import companion_line_for
from wheelcache.errors import ResolutionError

if TYPE_CHECKING:
    from wheelcache.core.provider import Req, WheelProvider

__all__ = ["explain_failure"]

_PYTHON = "<python>"
_TORCH = canonicalize_name("torch")
_COMPANIONS = (canonicalize_name("torchvision"), canonicalize_name("torchaudio"))
#: Lines in the one-line-per-fact summary; the rest go to the details.
_SUMMARY_LINES = 6
_MAX_DEPTH = 12


def _brief(identifier: str) -> str:
    """``pandas[aws,clipboard,…]`` for an identifier with many extras.

    >>> _brief("pandas[a,b,c,d,e]"), _brief("torch[opt-einsum]")
    ('pandas[a,b,…+3]', 'torch[opt-einsum]')
    """
    name, _, rest = identifier.partition("[")
    extras = rest.rstrip("]").split(",") if rest else []
    if len(extras) <= 3:
        return identifier
    return f"{name}[{','.join(extras[:2])},…+{len(extras) - 2}]"


def _short(r: Req) -> str:
    if r.name == _PYTHON:
        return str(r)
    return f"{_brief(r.identifier)}{r.specifier}"


def _parent(r: Req) -> str:
    parent = r.parent or ""
    if "[" in parent:  # "pandas 3.1.1[a,b,…]"
        head, _, extras = parent.partition("[")
        parent = head + _brief("x[" + extras)[1:]
    return parent


def _hop(r: Req) -> str:
    return f"{_parent(r)} requires {_short(r)}" if r.parent else f"{_short(r)} (requested)"


def _chain(p: WheelProvider, path: Sequence[Req]) -> str:
    """``frame[all]>=2 (requested) → frame 2.7.0[all] requires frame[excel] → …``: the
    requirements above ``path[0]`` (first seen, up to the user), then *path* itself."""
    up: list[Req] = []
    seen: set[tuple[str, Version]] = set()
    cur = path[0]
    while cur.via is not None and cur.via not in seen and len(up) < _MAX_DEPTH:
        seen.add(cur.via)
        nxt = p.first_req.get(cur.via[0])
        if nxt is None:
            break
        up.append(nxt)
        cur = nxt
    return " → ".join(_hop(r) for r in [*reversed(up), *path])


def _python_text(p: WheelProvider, r: Req) -> str:
    return f"{r.parent} requires {r} but the target has Python {p.target.python_version_full}"


def _impossible(p: WheelProvider, identifier: str, r: Req) -> tuple[str, str]:
    """(the leaf fact, the chain to it) for a requirement nothing satisfies on its own: the
    newest matching version's reason is followed down to a project without a usable file."""
    path = [r]
    cur_id, cur = identifier, r
    for _ in range(_MAX_DEPTH):
        cands = p.find(cur_id, [cur], with_dead=True)
        killed = next((p.dead[k] for c in cands if p.unusable(k := (cur_id, c.version))), None)
        if killed is None:
            break
        cur = killed
        cur_id = p.identify(cur)
        path.append(cur)
    if cur.name == _PYTHON:
        leaf = _python_text(p, cur)
    elif cur.extras and p.find(cur.name, [cur], with_dead=True):
        leaf = f"{_short(cur)}: no release of it provides what the extras need"
    else:
        leaf = p.source.explain(cur.name, cur.specifier)
    return leaf, f"  needed by: {_chain(p, path)}"


def _conflict(identifier: str, reqs: Sequence[Req]) -> tuple[str, list[str]]:
    texts = []
    for r in reqs:
        who = f"{_parent(r)} requires" if r.parent else "you asked for"
        text = f"{who} {_short(r)}"
        if text not in texts:
            texts.append(text)
    head = f"{identifier}: no version satisfies all of: " + "; ".join(texts[:4])
    if len(texts) > 4:
        head += f"; … ({len(texts)} requirements)"
    return head, [f"  {t}" for t in texts]


def _torch_pin(p: WheelProvider, roots: Sequence[Req]) -> Version | None:
    """The torch candidate the user pinned, when torch was pinned exactly and exists."""
    pins = [r for r in roots if r.name == _TORCH and not r.extras]
    exact = [
        r
        for r in pins
        if any(s.operator in ("==", "===") and "*" not in s.version for s in r.specifier)
    ]
    if not exact:
        return None
    found = p.find(_TORCH, exact)
    return found[0].version if found else None


def _companion_gaps(p: WheelProvider, roots: Sequence[Req]) -> list[str]:
    """For a pinned torch: each requested companion without a release that goes with it."""
    torch = _torch_pin(p, roots)
    if torch is None:
        return []
    out = []
    for name in _COMPANIONS:
        if name not in p.roots:
            continue
        cands = p.source.find_candidates(name)
        if any(p.goes_with(c, torch) for c in cands):
            continue
        spec, why = companion_line_for(name, torch, p.companion_pins(name))
        out.append(
            f"{p.source.explain(name, spec)} ({name}{spec} is the release for torch "
            f"{torch.public}, {why})"
        )
    return out


def _group(causes: Sequence[Any], p: WheelProvider) -> dict[str, list[Req]]:
    by_id: dict[str, list[Req]] = {}
    for cause in causes:
        r: Req = cause.requirement
        by_id.setdefault(p.identify(r), []).append(r)
    return by_id


def explain_failure(
    p: WheelProvider, causes: Sequence[Any], roots: Sequence[Req]
) -> ResolutionError:
    """The :class:`ResolutionError` for resolvelib's ``ResolutionImpossible`` *causes*."""
    facts: list[str] = []
    details: list[str] = []
    gaps = _companion_gaps(p, roots)
    facts += gaps
    # What the user asked for comes first: its chain runs down from the request.
    grouped: dict[str, list[Req]] = {}
    for r in roots:
        grouped.setdefault(p.identify(r), []).append(r)
    if any(r.name == _TORCH and not p.find(p.identify(r), [r]) for r in roots):
        # No torch at all: the companions, which follow torch, are not the news.
        grouped = {k: v for k, v in grouped.items() if v[0].name not in _COMPANIONS}
    for identifier, reqs in _group(causes, p).items():
        grouped.setdefault(identifier, []).extend(r for r in reqs if r.via is not None)
    for identifier, reqs in grouped.items():
        family = canonicalize_name(identifier.split("[", 1)[0]) in (_TORCH, *_COMPANIONS)
        alone = [r for r in reqs if not p.find(identifier, [r])]
        asked = [r for r in alone if r.via is None]
        if len(asked) > 1:  # "torch" and "--torch 2.4.0": one fact, for both together
            merged = replace(asked[0], specifier=SpecifierSet(), text="")
            for r in asked:
                merged = replace(merged, specifier=merged.specifier & r.specifier)
            alone = [merged, *(r for r in alone if r.via is not None)]
        for r in alone:
            leaf, chain = _impossible(p, identifier, r)
            if leaf not in facts:
                facts.append(leaf)
                details.append(chain)
        # Requirements of candidates found unusable are explained by their own cause.
        live = [r for r in reqs if r.via is None or not p.unusable(r.via)]
        if not alone and len(live) > 1 and not p.find(identifier, live):
            head, lines = _conflict(identifier, live)
            if gaps and family:
                details.append(head)  # the gaps above are the cause; this is the symptom
            else:
                facts.append(head)
            details += lines
    if not facts:  # nothing recognised: say what resolvelib said
        facts = [f"{_conflict(i, reqs)[0]}" for i, reqs in _group(causes, p).items()]
    summary = facts[:_SUMMARY_LINES]
    if len(facts) > _SUMMARY_LINES:
        summary.append(f"… and {len(facts) - _SUMMARY_LINES} more (-v shows them)")
    # A chain is worth a line when it leads somewhere the user did not name.
    chains = [d for d in details if d.startswith("  needed by:") and "→" in d][:2]
    head = f"cannot resolve for {p.target.describe()}:"
    if len(summary) == 1 and not chains:
        text = f"{head} {summary[0]}"  # one fact: one line
    else:
        text = head + "\n" + "\n".join(["  " + f for f in summary] + chains)
    return ResolutionError(text, details=tuple(facts + details))
