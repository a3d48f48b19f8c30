"""A challenge run's exports: the board as CSV, one row per submission ever made (replaced, hidden and cleared ones
marked), and the submitted images as an .npz (no pickled objects)."""
from __future__ import annotations

import csv
import io

import numpy as np


def csv_text(text: str) -> str:
    """A nickname as a spreadsheet shows it: never a formula (a leading =, +, - or @ makes Excel and LibreOffice
    evaluate the cell), quoted with an apostrophe as OWASP recommends."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def board_csv(board, run_id: int) -> str:
    """The CSV of run ``run_id`` of ``board`` (a :class:`robust_core.challenges.ChallengeBoard`). Scores as the server
    computed them, floats written exactly (``repr``), ranks on the board now (empty for entries off it)."""
    run = board.run(run_id)
    ranked = board.board(run_id, include_hidden=True)
    kind, models = run.challenge.kind, list(run.challenge.models)
    header = ["submission", "nickname", "created_unix_s", "live", "hidden", "cleared", "answer"]
    if kind == "fool":
        header += ["linf", "l2"] + [f"reads_{m}" for m in models] + [f"rank_{m}" for m in models]
    elif kind == "split":
        header += ["success", "split"] + [f"reads_{m}" for m in models] + ["reads_knn", "rank"]
    else:
        header += ["error", "rank"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    measured = run.reference.get("measured")
    for r in board.export_rows(run_id):
        scores = r["scores"]
        line = [r["id"], csv_text(r["nickname"]), f"{r['created']:.3f}", r["live"], r["hidden"], r["cleared"],
                "" if r["answer"] is None else repr(r["answer"])]
        if kind == "fool":
            line += [repr(scores["linf"]), repr(scores["l2"])]
            line += [scores["readings"][m]["class"] for m in models]
            line += [ranked.rank_of(r["id"], m) or "" for m in models]
        elif kind == "split":
            line += [int(scores["success"]), repr(scores["split"])]
            line += [scores["readings"][m]["class"] for m in models]
            line += [scores["readings"].get("k-NN", {}).get("class", ""), ranked.rank_of(r["id"], "split") or ""]
        else:
            error = None if measured is None or r["answer"] is None else abs(r["answer"] - measured)
            line += ["" if error is None else repr(error), ranked.rank_of(r["id"], "guess") or ""]
        writer.writerow(line)
    return out.getvalue()


def board_npz(board, run_id: int) -> bytes:
    """The run's submitted images: ``images`` (N, C, H, W) float32, ``submission`` ids and ``nicknames`` (the CSV's
    rows, in the same order), ``live`` and ``hidden`` flags."""
    from ..data import dataset_info

    run = board.run(run_id)
    rows = [r for r in board.export_rows(run_id) if r["image"] is not None]
    shape = dataset_info(run.challenge.dataset).shape
    images = np.stack([r["image"].reshape(shape) for r in rows]) if rows else np.zeros((0, *shape), np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images.astype(np.float32),
                        submission=np.array([r["id"] for r in rows], dtype=np.int64),
                        nicknames=np.array([r["nickname"] for r in rows], dtype=np.str_),
                        live=np.array([r["live"] for r in rows], dtype=bool),
                        hidden=np.array([r["hidden"] for r in rows], dtype=bool))
    return buffer.getvalue()


__all__ = ["board_csv", "board_npz", "csv_text"]
