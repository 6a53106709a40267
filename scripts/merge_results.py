"""Merge results files scored as separate runs of one `python -m cogen.evaluate` command into one.

    python scripts/merge_results.py imp.json lulc.json cloud.json sweep.json --out docs/results.json
    scripts/evaluate_demo.sh --reuse docs/results.json      # renders the page; nothing is re-scored

A baseline trained again is scored alone (`--baselines-only --baseline-checkpoint NEW`) and put in place of
the old figures with `--replace`:

    python scripts/merge_results.py docs/results.json new_baseline.json --replace "deterministic (same backbone)" \
        --out docs/results.json --overwrite

Each part is best run as its own process (evaluate writes only when it ends), e.g. one direction, the cloud
removal or the sweep each, with the same flags. Parts scored with other weights or settings are refused.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cogen.errors import UsageError, cli_exit  # noqa: E402
from cogen.evaluate import merge_results  # noqa: E402
from cogen.io import write_json  # noqa: E402


@cli_exit
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="+", help="results.json files of one command's parts")
    p.add_argument("--out", required=True, help="the merged results.json")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--replace", action="append", default=[], metavar="METHOD",
                   help="take this method (e.g. 'deterministic (same backbone)', trained again) from the last part "
                        "that scores it and drop its figures from earlier parts (repeatable)")
    a = p.parse_args(argv)
    if Path(a.out).exists() and not a.overwrite:
        raise UsageError(f"--out {a.out} exists; pass --overwrite to replace it")
    docs = []
    for f in a.parts:
        try:
            docs.append((f, json.loads(Path(f).read_text())))
        except (OSError, ValueError) as e:
            raise UsageError(f"{f}: not a readable results file ({e.__class__.__name__}); give evaluate's --out files")
    merged = merge_results(docs, a.replace)
    write_json(a.out, merged)
    print(f"wrote {a.out}: {', '.join(k for k in merged if k != 'meta')}; {merged['meta']['seconds']:.0f} s of scoring")


if __name__ == "__main__":
    main()
