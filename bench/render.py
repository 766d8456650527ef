"""Time PDF rendering: ms per letter for the naive ways and for `campaign render`, in one run.

    .venv/bin/python bench/render.py [--letters 200] [--sample 10] [--subset both|with|without]
                                     [--repeat 1]

Writes a throw-away project (the sample hospital letter and stylesheet, N fictional recipients
cycled from the sample spreadsheet, addresses at example.org/.com) in a temporary folder, then
measures, for the same letters:

  (a) the naive baseline: a fresh `weasyprint` command per letter (on a sample of letters);
  (b) one process calling `HTML(string=…).write_pdf()` per letter (stylesheet parsed each time);
  (c) `campaign render --jobs 1`: load, check, render in one process (one stylesheet, one
      FontConfiguration);
  (d) `campaign render` with all cores (worker processes);
  (e) a second `campaign render` with nothing changed, in process and as a command;
  (f) one process, the same letters untagged and tagged (issue 11: tag by default under 15 %).

Ratios are against (a) and (b) measured in the same run. `--subset without` hides
libharfbuzz-subset from WeasyPrint (fontTools then subsets the fonts) in this process, its
workers and the `weasyprint` commands, so both figures come from one machine and one run.
Targets (issue 3): (d) ≤ 60 ms/letter on 2 cores, ≥ 14× (a), ≥ 2.7× (b); (e) under 2 s for
1,000 letters; worker memory flat in N.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = "hopitaux-2020-05"
BIN = Path(sys.executable).parent

# Run the `weasyprint` command, optionally without libharfbuzz-subset (argv[1] is "0" or "1").
WEASYPRINT_COMMAND = """
import sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import weasyprint.pdf.fonts as fonts
if sys.argv.pop(1) == "0":
    fonts.harfbuzz_subset = None
from weasyprint.__main__ import main
main()
"""


def make_project(root: Path, letters: int) -> Path:
    """A copy of the sample project whose hospital campaign has `letters` recipients."""
    from campaign.recipients import read_table

    shutil.copy(REPO / "settings.yaml", root / "settings.yaml")
    shutil.copytree(REPO / "letters", root / "letters")
    shutil.copytree(REPO / "recipients", root / "recipients")
    table = read_table(REPO / "recipients" / "directeurs-hopitaux.xlsx")
    sample = [
        dict(zip(table.headers, cells, strict=False))
        for _, cells in table.rows
        if all(cells[table.headers.index(c)] for c in ("Civilité", "Nom", "Courriel"))
    ]
    with (root / "recipients" / "bench.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=table.headers)
        writer.writeheader()
        for n in range(letters):
            row = dict(sample[n % len(sample)])
            local, _, domain = row["Courriel"].partition("@")
            row["Courriel"] = f"{local}.{n}@{domain}"
            writer.writerow(row)
    settings = root / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(
        text.replace("recipients/directeurs-hopitaux.xlsx", "recipients/bench.csv"), "utf-8"
    )
    return settings


def set_subset(enabled: bool) -> None:
    """Let WeasyPrint use libharfbuzz-subset (if installed) or hide it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from weasyprint.pdf import fonts
        from weasyprint.text import ffi
    fonts.harfbuzz_subset = ffi.harfbuzz_subset if enabled else None


def naive_command(settings: Path, sample: int, subset: bool, work: Path) -> float:
    """(a) ms/letter: one `weasyprint` command per letter."""
    from campaign.inputs import load_inputs
    from campaign.settings import load_settings
    from campaign.typeset import letter_html

    inputs = load_inputs(load_settings(settings).campaign(CAMPAIGN))
    css = settings.parent / "letters" / "lettre.css"
    pages = []
    for n, recipient in enumerate(inputs.recipients.ready[:sample]):
        page = settings.parent / "letters" / f"bench-{n}.html"
        page.write_text(letter_html(inputs, recipient), encoding="utf-8")
        pages.append(page)
    started = time.perf_counter()
    for n, page in enumerate(pages):
        subprocess.run(
            [
                sys.executable,
                "-c",
                WEASYPRINT_COMMAND,
                "1" if subset else "0",
                str(page),
                str(work / f"a-{n}.pdf"),
                "-s",
                str(css),
            ],
            check=True,
        )
    return (time.perf_counter() - started) * 1000 / len(pages)


def naive_in_process(settings: Path, sample: int, work: Path) -> float:
    """(b) ms/letter: `HTML(string=…).write_pdf()` per letter, stylesheet parsed each time."""
    from weasyprint import HTML

    from campaign.inputs import load_inputs
    from campaign.settings import load_settings
    from campaign.typeset import letter_html

    inputs = load_inputs(load_settings(settings).campaign(CAMPAIGN))
    css = str(settings.parent / "letters" / "lettre.css")
    base = str(settings.parent / "letters") + os.sep
    recipients = inputs.recipients.ready[:sample]
    HTML(string=letter_html(inputs, recipients[0]), base_url=base).write_pdf(stylesheets=[css])
    started = time.perf_counter()
    for n, recipient in enumerate(recipients):
        html = letter_html(inputs, recipient)
        HTML(string=html, base_url=base).write_pdf(work / f"b-{n}.pdf", stylesheets=[css])
    return (time.perf_counter() - started) * 1000 / len(recipients)


def tagging_cost(settings: Path, sample: int) -> tuple[float, float]:
    """(f) ms/letter in one process, untagged and tagged (structure tree, Note/Reference roles).

    The two are alternated and the best of three kept, so that load on the machine hits both.
    """
    from campaign import tagging
    from campaign.inputs import load_inputs
    from campaign.settings import load_settings
    from campaign.typeset import Renderer

    inputs = load_inputs(load_settings(settings).campaign(CAMPAIGN))
    renderer = Renderer(inputs)
    tagging.install()
    recipients = inputs.recipients.ready[:sample]
    renderer.render(recipients[0])
    best = {False: float("inf"), True: float("inf")}
    for _ in range(3):
        for tagged in (False, True):
            renderer.tagged = tagged
            started = time.perf_counter()
            for recipient in recipients:
                renderer.render(recipient)
            best[tagged] = min(best[tagged], (time.perf_counter() - started) * 1000 / sample)
    renderer.close()
    return best[False], best[True]


def campaign_render(settings: Path, jobs: int | None) -> tuple[float, int, list[float]]:
    """What `campaign render` does, timed: load, check, render. Returns s, letters, worker RSS."""
    from campaign.inputs import check_inputs, load_inputs
    from campaign.pdf import render_letters
    from campaign.settings import load_settings

    started = time.perf_counter()
    inputs = load_inputs(load_settings(settings).campaign(CAMPAIGN))
    assert not check_inputs(inputs).errors
    report = render_letters(inputs, jobs=jobs)
    assert not report.failures, report.failures
    return time.perf_counter() - started, len(report.rendered), report.worker_rss_mib


def command_seconds(settings: Path) -> float:
    """Wall time of the real `campaign render` command (Python start-up included)."""
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "campaign"), "--settings", str(settings), "render", CAMPAIGN, "--quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def run(letters: int, sample: int, subset: bool, repeat: int) -> dict[str, float]:
    set_subset(subset)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-render-") as folder:
        root = Path(folder)
        work = root / "work"
        work.mkdir()
        settings = make_project(root, letters)
        outbox = root / "outbox"
        # Best of `repeat` runs: other processes on the machine only ever slow a run down.
        figures["a"] = min(naive_command(settings, sample, subset, work) for _ in range(repeat))
        figures["b"] = min(naive_in_process(settings, sample * 2, work) for _ in range(repeat))
        figures["c"] = figures["d"] = float("inf")
        for _ in range(repeat):
            shutil.rmtree(outbox, ignore_errors=True)
            seconds, count, _ = campaign_render(settings, jobs=1)
            figures["c"] = min(figures["c"], seconds * 1000 / count)
        for _ in range(repeat):
            shutil.rmtree(outbox)
            seconds, count, rss = campaign_render(settings, jobs=None)
            figures["d"] = min(figures["d"], seconds * 1000 / count)
        quarter = max(1, len(rss) // 4)
        figures["rss_quarter"] = max(rss[:quarter])
        figures["rss_end"] = max(rss)
        seconds, rendered, _ = campaign_render(settings, jobs=None)
        assert rendered == 0
        figures["e_inprocess"] = seconds
        figures["e_command"] = command_seconds(settings)
        figures["letters"] = count
        figures["f_untagged"], figures["f_tagged"] = tagging_cost(settings, sample * 2)
    return figures


def table(results: dict[str, dict[str, float]], letters: int, sample: int, repeat: int) -> str:
    cores = os.cpu_count() or 1
    lines = [
        f"{letters} letters (2 pages, 4 footnotes, SVG logo), {cores} cores, "
        f"(a) on {sample} letters, (b) on {sample * 2}; best of {repeat} runs.",
        "",
        "| |" + "".join(f" {name}: ms/letter | × vs (a) | × vs (b) |" for name in results),
        "|---|" + "---:|---:|---:|" * len(results),
    ]
    names = {
        "a": "(a) a `weasyprint` command per letter",
        "b": "(b) one process, `HTML().write_pdf()` per letter",
        "c": "(c) `campaign render --jobs 1`",
        "d": f"(d) `campaign render` ({cores} workers)",
    }
    for key, label in names.items():
        cells = "".join(
            f" {f[key]:.0f} | {f['a'] / f[key]:.1f}× | {f['b'] / f[key]:.1f}× |"
            for f in results.values()
        )
        lines.append(f"| {label} |{cells}")
    for name, figures in results.items():
        lines.append(
            f"\n(e) {name}: second render of the {figures['letters']:.0f} letters, nothing "
            f"changed: {figures['e_inprocess']:.2f} s in process (load, check, hashes), "
            f"{figures['e_command']:.2f} s as a command with Python start-up. Worker peak RSS: "
            f"{figures['rss_quarter']:.0f} MiB after the first quarter, "
            f"{figures['rss_end']:.0f} MiB at the end."
        )
        lines.append(
            f"\n(f) {name}: one process, {figures['f_untagged']:.0f} ms/letter untagged, "
            f"{figures['f_tagged']:.0f} ms/letter tagged: tagging costs "
            f"{(figures['f_tagged'] / figures['f_untagged'] - 1) * 100:+.1f} % "
            "(tagged by default when under 15 %)."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--letters", type=int, default=200)
    parser.add_argument("--sample", type=int, default=10, help="letters for (a); (b) uses twice")
    parser.add_argument("--subset", choices=["both", "with", "without"], default="both")
    parser.add_argument("--repeat", type=int, default=1, help="keep the best of N runs of each")
    args = parser.parse_args()
    set_subset(True)
    from campaign.typeset import harfbuzz_subset_available

    installed = harfbuzz_subset_available()
    modes = {"with": True, "without": False}
    if args.subset != "both":
        modes = {args.subset: modes[args.subset]}
    if not installed:
        print("libharfbuzz-subset is not installed: measuring without it only", file=sys.stderr)
        modes = {"without": False}
    results: dict[str, dict[str, float]] = {}
    for enabled in modes.values():
        label = f"{'with' if enabled else 'without'} hb-subset"
        print(f"measuring {label}...", file=sys.stderr)
        results[label] = run(args.letters, args.sample, enabled, args.repeat)
    print(table(results, args.letters, args.sample, args.repeat))


if __name__ == "__main__":
    main()
