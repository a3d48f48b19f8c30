"""User-supplied text as plain text wherever Markdown renders, and the numbers' formats (not a page)."""
from __future__ import annotations

import re


# ASCII punctuation: CommonMark lets every one be backslash-escaped, and each may start Markdown (links, images,
# emphasis, code, headings, lists, tables, HTML, entities, Streamlit's :color[...] directives, $math$).
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


# GitHub-flavoured Markdown also turns URLs and e-mail addresses in plain text into links, escaped or not (it reads
# the text after the escapes are resolved): a word joiner (U+2060, invisible) after "http"/"www" and before "@"
# keeps them text.
_AUTOLINK_STARTS = re.compile(r"(?i)(https?|www|ftp|mailto|xmpp)(?=[:.])")


def plain(text) -> str:
    """``text`` (a user-supplied string: a model name, a job label, a file name, an error about them) for an element
    that renders Markdown (st.markdown, st.info/warning/error/success, st.caption, st.write, widget labels and
    help, progress texts, metric labels, ...): shown exactly as written, never as a link, an image, emphasis or HTML.
    A model named ``![t](http://host/track.png)`` must not make every visitor's browser fetch that address."""
    text = " ".join(str(text).split())  # one line: a line break could start a heading or a list
    text = _AUTOLINK_STARTS.sub("\\1\u2060", text).replace("@", "\u2060@")
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def format_percent(value) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
