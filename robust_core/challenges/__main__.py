"""Class challenges from the command line: what the Challenges page's lecturer view does, on the same store.

    python -m robust_core.challenges list                         # the challenge files, and the bad ones
    python -m robust_core.challenges start 01_fool_by_hand --budget 0.2
    python -m robust_core.challenges runs
    python -m robust_core.challenges board K7QM
    python -m robust_core.challenges state K7QM revealed          # open | paused | revealed | ended
    python -m robust_core.challenges export K7QM --csv board.csv --npz images.npz

``start`` measures the lab's own numbers first (once per set of weights, kept in the store), so running it before a
lecture makes the lecturer's Start instant in the room.
"""
from __future__ import annotations

import argparse
import sys

from . import STATES, ChallengeError, ChallengeRoom, read_challenges


def _room(store_dir):
    from ..shipped import install_shipped
    from ..store import ModelStore, resolve_store_dir

    store = ModelStore(resolve_store_dir(store_dir))
    install_shipped(store)
    return ChallengeRoom(store)


def _run(room, code: str):
    run = room.board_db.run(code)
    if run is None:
        raise ChallengeError(f"no challenge run has the code {code!r} (runs lists them)")
    return run


def _print_board(room, run) -> None:
    board = room.board(run.id)
    print(f"{run.code} · {run.challenge.title} · {run.state} · {len(board.entries)} entries, "
          f"{board.submissions} submissions")
    by_id = {e.id: e for e in board.entries}
    for ranking, ids in board.ranks.items():
        print(f"  {ranking}:")
        for rank, entry_id in enumerate(ids, start=1):
            entry = by_id[entry_id]
            value = entry.answer if run.challenge.kind == "guess" else entry.scores.get("norm",
                                                                                         entry.scores.get("split"))
            print(f"    {rank:3d}. {entry.nickname!r}  {value:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robust-lab challenges", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="the model store folder (default: $ROBUST_STORE_DIR or the user's cache)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the challenge files")
    start = commands.add_parser("start", help="start a run of a challenge file (by its name)")
    start.add_argument("name")
    start.add_argument("--budget", type=float, help="a fool challenge's budget (default: the file's)")
    commands.add_parser("runs", help="the runs not ended")
    board = commands.add_parser("board", help="a run's board and ranks")
    board.add_argument("code")
    state = commands.add_parser("state", help="pause, open, reveal or end a run")
    state.add_argument("code")
    state.add_argument("state", choices=STATES)
    export = commands.add_parser("export", help="a run's board as CSV and its images as .npz")
    export.add_argument("code")
    export.add_argument("--csv")
    export.add_argument("--npz")
    args = parser.parse_args(argv)
    challenges, errors = read_challenges()
    if args.command == "list":
        for c in challenges:
            print(f"{c.name:28s} {c.kind:6s} {c.title}")
        for message in errors:
            print(f"error: {message}", file=sys.stderr)
        return 1 if errors else 0
    try:
        room = _room(args.store)
        if args.command == "start":
            chosen = next((c for c in challenges if c.name == args.name), None)
            if chosen is None:
                raise ChallengeError(f"no challenge file {args.name!r} (list shows them)")
            run = room.start(chosen, by="command line", budget=args.budget)
            print(f"started {run.code}: students open /challenges?c={run.code}")
        elif args.command == "runs":
            for run in room.board_db.runs():
                print(f"{run.code}  {run.state:8s} {run.challenge.title}")
        elif args.command == "board":
            _print_board(room, _run(room, args.code))
        elif args.command == "state":
            run = room.set_state(_run(room, args.code).id, args.state)
            print(f"{run.code}: {run.state}")
        else:
            run = _run(room, args.code)
            if args.csv:
                with open(args.csv, "w", encoding="utf-8", newline="") as f:
                    f.write(room.board_db.export_csv(run.id))
                print(f"written to {args.csv}")
            if args.npz:
                with open(args.npz, "wb") as f:
                    f.write(room.board_db.export_npz(run.id))
                print(f"written to {args.npz}")
    except ChallengeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
