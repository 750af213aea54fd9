"""Words in messages: counts (`1 trial`, `3 trials`) and the option a mistyped word meant."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """A count with its noun, singular for one (`plural`: the noun's plural when it is not noun + 's')."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def closest(word: str, options: Sequence[str]) -> str | None:
    """The option a mistyped `word` most likely meant: the same but for case ('SGD', 'ReLU'), else the nearest
    spelling, else one it abbreviates or that it starts with ('minimize' for 'min'); None when nothing is near."""
    lower = word.lower()
    same = [o for o in options if o.lower() == lower]
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    prefix = [o for o in options if len(lower) > 1 and (o.lower().startswith(lower) or (len(o) > 2 and lower.startswith(o.lower())))]
    found = same or near or prefix
    return found[0] if found else None


def hinted(word: str, options: Sequence[str]) -> str:
    """`'Dres' (did you mean 'Dress'?)`, or the word alone when no option is near."""
    match = closest(word, options)
    return f"{word!r} (did you mean {match!r}?)" if match else repr(word)
