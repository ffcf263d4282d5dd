"""Report: our fine-tuning medians beside the paper's GLUE / SQuAD numbers, pre-training curves.

    python launch/report.py --runs=runs [--out=runs/report] [--paper-row=table2:ELECTRA-400K]

Walks --runs for fine-tuning workdirs (`results.json`) and pre-training workdirs
(`metrics.jsonl` + `config.json`). Prints a Markdown report and writes `report.md`,
`report.json` (the same numbers) and `pretraining_curves.png` to --out. Scores are x100 as in
the paper: CoLA MCC, STS-B Spearman, accuracy otherwise (MNLI matched), SQuAD EM / F1. Ours
are medians over every seed found for a (model, task): several run directories of one task
(one per seed, say) are pooled. GLUE score = mean of the 8 tasks without WNLI; a model missing
some shows the mean over those present, marked "(k/8)", and names the missing ones.
Paper numbers come from launch/reference/paper_results.json.
"""

from __future__ import annotations

import argparse
import os

from etils import epath

from electra_jax.cli import ArgumentParser, note
from electra_jax.errors import UserError, exit_on_user_error
from electra_jax.storage import absolute, check_location, make_dirs, write_json
from launch.report_data import (
    DEFAULT_PAPER_ROWS,
    LOOKS_FOR,
    SECTIONS,
    build_report,
    check_root,
    discover,
    load_paper_results,
    select_paper_rows,
)
from launch.report_render import plot_curves, render_markdown, write_text


def make_out_dir(out: str) -> str:
    """--out as an existing directory (created if needed; local or gs://)."""
    check_location(out, "--out")
    if epath.Path(out).exists() and not epath.Path(out).is_dir():
        raise UserError(f"--out={out} exists and is not a directory; choose another path")
    make_dirs(out)
    return absolute(out)


def parse_paper_rows(value: str) -> list[str]:
    """--paper-row "a:b,c:d" -> ["a:b", "c:d"]."""
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python launch/report.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", required=True, help="directory searched for workdirs")
    parser.add_argument("--out", help="where report.md / .json / .png go (default RUNS/report)")
    parser.add_argument(
        "--paper-row", action="append", type=parse_paper_rows,
        help="paper rows to show, SECTION:NAME or NAME (sections: " + ", ".join(SECTIONS)
        + "); repeat or comma-separate; 'none' for none; default " + ",".join(DEFAULT_PAPER_ROWS),
    )  # fmt: skip
    parser.add_argument(
        "--group-by", choices=("init_from", "dir"), default="init_from",
        help="our rows: per pre-trained model (size + init_from in results.json), or per "
        "directory (a run's path under --runs up to the folder named after its task)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.paper_row = (
        [s for specs in args.paper_row for s in specs]
        if args.paper_row
        else list(DEFAULT_PAPER_ROWS)
    )
    return args


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = check_root(args.runs)
    paper_rows = select_paper_rows(load_paper_results(), args.paper_row)
    finetune, pretrain = discover(root)
    if not finetune and not pretrain:
        raise UserError(f"no results under {root}: looked for {LOOKS_FOR} in it and every "
                        "folder below")  # fmt: skip
    out = make_out_dir(args.out or os.path.join(root, "report"))
    report = build_report(root, finetune, pretrain, paper_rows, args.group_by)
    if pretrain:
        plot_curves(pretrain, os.path.join(out, "pretraining_curves.png"))
        report["outputs"]["curves_png"] = "pretraining_curves.png"
    markdown = render_markdown(report, paper_rows)
    write_text(os.path.join(out, "report.md"), markdown)
    write_json(os.path.join(out, "report.json"), report)
    print(markdown, end="")
    written = ["report.md", "report.json", *([report["outputs"]["curves_png"]] if pretrain else [])]
    note(f"wrote {', '.join(written)} to {out}")


if __name__ == "__main__":
    main()
