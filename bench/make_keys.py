"""Create N accounts with one API key each through `genq keys create --json`, run
in-process N times (one interpreter instead of N), and print one JSON line per key.

    python make_keys.py --data-dir DIR --count 64 --plan bench --prefix bench
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--plan", default="pro")
    p.add_argument("--prefix", default="bench")
    args = p.parse_args()
    from genq.cli import app

    for i in range(args.count):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            app(["keys", "create", "--data-dir", args.data_dir, "--json",
                 "--account", f"{args.prefix}{i:03d}", "--plan", args.plan,
                 "--name", "bench"], standalone_mode=False)
        line = buf.getvalue().strip().splitlines()[-1]
        json.loads(line)  # it must be the JSON line
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
