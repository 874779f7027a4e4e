"""The verdicts of chapters 3-8 from a second, disjoint set of seeds, beside the published ones.

    python -m benchmarks.disjoint_seeds --profile laptop --seed 3 --population-seed 8
    python -m benchmarks.disjoint_seeds --compare-only   # the report again, against the book as published now

Executes each chapter with papermill from its jupytext source into ``--out-dir``, with
its ``seed`` parameter moved past the seeds the published book used (``--seed`` for
chapters 3, 4, 5, 7 and 8, whose comparisons use that seed and the profile's next ones;
``--population-seed`` for chapter 6, whose populations take that many seeds and more),
then writes ``--report``: every verdict row of the published notebook
(``book/<stem>.ipynb``) beside the same row of the new run, and whether they match. A
row matches when both say the same thing ("agrees", "does not agree", "agrees only in
part", ...), or when what differs is too close to call on one side: a call on one set of
seeds and no call on the other is not a contradiction, a call each way is.

Give it a store of its own (``REPSIM_HOME``) to keep the check's models apart, or the
book's to reuse whatever the two share (nothing, when the seeds are disjoint).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
import papermill

from repsim.book.runner import kernel_config

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ("03_blocks", "04_probes", "05_across_models", "06_predictions", "07_origins", "08_measures")
ROW = re.compile(r"^- (?P<claim>.+?): \*\*(?P<verdict>.+?)\*\*", re.MULTILINE)


def verdict_rows(notebook: Path) -> dict[str, str]:
    """{claim: verdict} of every verdict list ("- claim: **verdict** ...") a notebook displays."""
    rows = {}
    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown", "")
            for match in ROW.finditer(text if isinstance(text, str) else "".join(text)):
                rows[match["claim"]] = match["verdict"]
    return rows


def word(verdict: str) -> str:
    """The verdict without its counts: "agrees only in part (1 of 3; ...)" -> "agrees only in part"."""
    return verdict.split(" (")[0].strip()


WORDS = ("agrees", "does not agree", "too close to call", "not measurable", "not tested", "pending")


COUNTS = re.compile(r"\((?P<held>\d+) of (?P<of>\d+)(?:; (?P<rest>[^)]*))?\)")


def calls(verdict: str) -> tuple[int, int, int] | None:
    """(agree, against, too close) comparisons of a verdict in ``claims``' words: "agrees
    only in part (1 of 3; 1 against, 1 too close to call)" -> (1, 1, 1); a verdict without
    counts is one comparison; None for a verdict that calls nothing ("not measurable")."""
    name = word(verdict)
    counts = COUNTS.search(verdict)
    if counts is None:
        single = {"agrees": (1, 0, 0), "does not agree": (0, 1, 0), "too close to call": (0, 0, 1)}
        return single.get(name)
    held, of = int(counts["held"]), int(counts["of"])
    rest = dict((label, int(n)) for n, label in re.findall(r"(\d+) (against|too close to call)", counts["rest"] or ""))
    if name == "too close to call":
        return 0, 0, of
    close = rest.get("too close to call", 0)
    return held, of - held - close, close  # "against" is what is neither agreeing nor too close


def consistent(published: str | None, disjoint: str | None) -> str:
    """Whether two verdicts on one claim contradict each other. Only a call each way is a
    contradiction: the same words are "same"; a comparison called on one side and too
    close to call on the other is not. From the counts alone it is unknown which
    comparison is which, so any agreement on one side beside any "against" on the other
    counts as "different"."""
    if published is None or disjoint is None:
        return "missing"
    if not published.startswith(WORDS):  # a count ("5 of 12 residual networks ..."), not a call
        return "a count, not called"
    same = word(published) == word(disjoint)
    a, b = calls(published), calls(disjoint)
    if published == disjoint or a is None or b is None:
        return "same" if same else "different"
    if (a[0] and b[1]) or (a[1] and b[0]):
        return "different"
    return "same" if same else "too close to call on one side"


def execute(stem: str, params: dict, out_dir: Path) -> tuple[Path, float]:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{stem}.ipynb"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{stem}.ipynb"
        jupytext.write(jupytext.read(ROOT / "book" / f"{stem}.py"), source)
        papermill.execute_notebook(source, out, parameters=params, cwd=ROOT / "book", progress_bar=False,
                                   config=kernel_config(Path(tmp)))
    return out, time.perf_counter() - start


def report(rows: list[tuple[str, str, str | None, str | None]], seeds: str, times: dict[str, float]) -> str:
    counts = {}
    for *_, published, disjoint in rows:
        counts[consistent(published, disjoint)] = counts.get(consistent(published, disjoint), 0) + 1
    lines = [f"Verdicts of the published book beside those from {seeds} "
             f"(`python -m benchmarks.disjoint_seeds`); {', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}.",
             "", "| chapter | claim | published | disjoint seeds | |", "|---|---|---|---|---|"]
    for stem, claim, published, disjoint in rows:
        lines.append(f"| {stem} | {claim} | {published or '-'} | {disjoint or '-'} | {consistent(published, disjoint)} |")
    lines += ["", "Execution time of each chapter on the disjoint seeds: "
              + ", ".join(f"{stem} {seconds:.0f} s" for stem, seconds in times.items()) + "."]
    return "\n".join(lines) + "\n"


def compare(chapters, out_dir: Path, report_path: Path, seeds: str) -> None:
    """The report of the executed chapters in ``out_dir`` against the published book."""
    times = json.loads((out_dir / "seconds.json").read_text())
    rows = []
    for stem in chapters:
        if not (out_dir / f"{stem}.ipynb").exists():
            continue
        published, disjoint = verdict_rows(ROOT / "book" / f"{stem}.ipynb"), verdict_rows(out_dir / f"{stem}.ipynb")
        rows += [(stem, claim, published.get(claim), disjoint.get(claim)) for claim in dict.fromkeys([*published, *disjoint])]
    report_path.write_text(report(rows, seeds, times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--seed", type=int, default=3, help="first seed of chapters 3, 4, 5, 7 and 8")
    parser.add_argument("--population-seed", type=int, default=8, help="first seed of chapter 6's populations")
    parser.add_argument("--chapters", nargs="+", default=list(CHAPTERS))
    parser.add_argument("--out-dir", type=Path, default=ROOT / "_build" / "disjoint")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "disjoint_seeds.md")
    parser.add_argument("--compare-only", action="store_true", help="only write the report from --out-dir")
    args = parser.parse_args()
    seeds = f"seeds from {args.seed} (chapter 6: populations from seed {args.population_seed})"
    if not args.compare_only:
        times_file = args.out_dir / "seconds.json"
        for stem in args.chapters:
            seed = args.population_seed if stem == "06_predictions" else args.seed
            _, seconds = execute(stem, {"profile": args.profile, "seed": seed}, args.out_dir)
            times = json.loads(times_file.read_text()) if times_file.exists() else {}
            times_file.write_text(json.dumps({**times, stem: seconds}))
            print(f"{stem}: {seconds:.0f} s", flush=True)
    compare(args.chapters, args.out_dir, args.report, seeds)


if __name__ == "__main__":
    main()
