"""`python -m soma.launch NAME CMD...`: count one start of plane process NAME, then exec CMD.

supervisord reports state, pid, start time and last exit status, but not how often it
restarted a process; this wrapper counts starts in `<stack_dir>/run/starts/NAME` so that
`soma status` can say it. It replaces itself with CMD, so signals reach CMD directly.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        sys.exit("usage: python -m soma.launch NAME CMD [ARGS...]")
    name, command = argv[1], argv[2:]
    from soma.settings import Settings  # the same stack dir the supervisor was given

    counter = Settings().stack_dir / "run" / "starts" / name
    counter.parent.mkdir(parents=True, exist_ok=True)
    try:
        starts = int(counter.read_text().strip() or "0")
    except (FileNotFoundError, ValueError):
        starts = 0
    counter.write_text(str(starts + 1))
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv)
