"""python -m engine.tiny DIR [--layout official|diffusers] [--preset tiny|medium] [--seed 0]"""

from __future__ import annotations

import argparse

from engine.tiny import LAYOUTS, write_tiny_checkpoint
from engine.tiny.presets import PRESETS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m engine.tiny", description="Write a seeded random-weight FLF2V checkpoint at toy sizes."
    )
    parser.add_argument("dir", help="folder to write (created; left alone if it already holds this checkpoint)")
    parser.add_argument("--layout", choices=LAYOUTS, default="official")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_tiny_checkpoint(args.dir, layout=args.layout, preset=args.preset, seed=args.seed))


if __name__ == "__main__":
    main()
