"""Model names as readers see them: what makes two names the same in a picker.

A room's visitors name their models, and every other visitor picks models by those names: a name that reads as
another model's (a Cyrillic "С" for a Latin "C", a full-width letter, an invisible character) would let a student's
model pass for a shipped one. :func:`names_look_alike` is what the store refuses; :func:`clean_name` is what it keeps.
"""
from __future__ import annotations

import functools
import unicodedata


# Characters that draw nothing (or a blank) but are not Unicode's format or control characters: the Braille blank,
# the Hangul fillers, the combining grapheme joiner, Mongolian and Khmer vowel fillers. Each let a name padded with
# it pass for another (a shipped model's name and 30 Braille blanks read as that name in a picker).
_BLANK_LOOKING = frozenset("\u2800\u3164\u115f\u1160\uffa0\u034f\u17b4\u17b5\u180e")


def _invisible(c: str) -> bool:
    code = ord(c)
    return (unicodedata.category(c) in ("Cf", "Cc") or c in _BLANK_LOOKING
            or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF)  # variation selectors


def clean_name(name: str) -> str:
    """``name`` as the store keeps it: invisible characters (zero-width spaces and joiners, bidi overrides: Unicode's
    format and control characters; blank-looking fillers; variation selectors) removed and spacing collapsed (every
    Unicode space is a space). A visitor's name must read as what it is: a right-to-left override or a hidden
    character would make two different names look alike."""
    return " ".join("".join(c for c in str(name) if not _invisible(c)).split())


def name_keys(name: str) -> tuple[str, str]:
    """Two spellings of what a reader sees in ``name``: equal in either for two names a reader cannot tell apart
    in a picker (:func:`names_look_alike`). Both ignore spacing, invisible characters, compatibility forms ("Ｃ" for
    "C": NFKC) and case, and map Unicode's confusables to one prototype (a Cyrillic "С", a lunate sigma "Ϲ" for C).

    Why two: case and look-alikes do not commute. Case first sees that "Original" is "original" (a Latin "O" is a
    look-alike of "0", a lowercase "o" is not); look-alikes first see that a Cyrillic "САТ" is "CAT" (its "Т" folds
    to a "т", which reads as no Latin letter). Joining both relations into one would chain unrelated letters."""
    return _name_keys(str(name))


@functools.lru_cache(maxsize=4096)  # every page run of every visitor labels the store's models
def _name_keys(name: str) -> tuple[str, str]:
    prototypes = _confusable_prototypes()

    def fold(text: str) -> str:
        return unicodedata.normalize("NFKC", text).casefold()

    def look_alikes(text: str) -> str:
        return "".join(prototypes.get(c, c) for c in text)

    text = unicodedata.normalize("NFD", clean_name(name))
    case_first = fold(look_alikes(fold(look_alikes(text.casefold()))))
    look_alikes_first = fold(look_alikes(fold(look_alikes(text))))
    return case_first, look_alikes_first


def name_key(name: str) -> str:
    """What groups names that read alike ("CNN  · Standard " and "cnn · standard", "СNN" with a Cyrillic С and
    "CNN"): the first of :func:`name_keys`. Use :func:`names_look_alike` to decide whether a name is taken."""
    return name_keys(name)[0]


def names_look_alike(a: str, b: str) -> bool:
    """True when names ``a`` and ``b`` read alike in a picker (see :func:`name_keys`)."""
    return any(x == y for x, y in zip(name_keys(a), name_keys(b)))


def prototypes(text: str) -> str:
    """``text`` with each character replaced by the representative of its group of Unicode look-alikes (the one
    :func:`name_keys` folds it to): "Ⅽ", "С" and "C" all become "C"."""
    table = _confusable_prototypes()
    return "".join(table.get(c, c) for c in text)


@functools.cache
def _confusable_prototypes() -> dict[str, str]:
    """Each character that Unicode's confusables data (TR39, from ``confusable_homoglyphs``) links to another, mapped to
    one representative of its group of look-alikes (the smallest code point, so an ASCII letter where there is one).

    The data lists, for a character, the characters it can be mistaken for, without saying which is the prototype;
    joining those pairs into groups makes every member map to the same character whichever way a pair was listed.
    Multi-character look-alikes ("rn" for "m") are left out: a name differing by them still reads differently
    enough once the picker marks visitors' models."""
    from confusable_homoglyphs.confusables import confusables_data

    parent: dict[str, str] = {}

    def root(c: str) -> str:
        while parent.get(c, c) != c:
            parent[c] = parent.get(parent[c], parent[c])
            c = parent[c]
        return c

    for char, homoglyphs in confusables_data.items():
        if len(char) != 1:
            continue
        for glyph in homoglyphs:
            if len(glyph["c"]) == 1:
                a, b = root(char), root(glyph["c"])
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {c: root(c) for c in parent}


__all__ = ["clean_name", "name_key", "name_keys", "names_look_alike", "prototypes"]
