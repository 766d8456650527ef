"""How long the commands take to start, against `python -c "import click"` in the same run.

Targets (issue: a fast start): `campaign --help` ≤ 2× the baseline, `campaign status` on the sample
≤ 4×. Each command runs `--runs` times, alternating with the baseline; the medians are compared.

`campaign status` is measured on a copy of the sample as organisers run it, proofed and approved
(set up before timing, not timed): while no input file changed since the approval, status takes
the recipients from the approval's record instead of reading the spreadsheet (campaign.recorded).
`status (inputs changed)` is the same copy with one byte added to the letter: status then reads
every input again, as it did always before.

    .venv/bin/python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python = sys.executable
    campaign = str(Path(python).with_name("campaign"))
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder) / "sample"
        project.mkdir()
        for name in ("settings.yaml", "letters", "recipients"):
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, project / name)
            else:
                shutil.copy(source, project / name)
        changed = Path(folder) / "changed"
        for command in (["proof"], ["approve", "--by", "bench"]):
            subprocess.run([campaign, *command], cwd=project, check=True, capture_output=True)
        shutil.copytree(project, changed)
        letter = changed / "letters" / "lettre-hopitaux.md"
        letter.write_text(letter.read_text(encoding="utf-8") + "\n", encoding="utf-8")
        commands = {
            "baseline: python -c 'import click'": ([python, "-c", "import click"], project),
            "campaign --help": ([campaign, "--help"], project),
            "campaign status": ([campaign, "status"], project),
            "campaign status (inputs changed)": ([campaign, "status"], changed),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (command, cwd) in commands.items():
                times[name].append(timed(command, cwd))
    base = statistics.median(times["baseline: python -c 'import click'"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:40s} median {median * 1000:7.1f} ms   ratio {median / base:5.2f}x")


if __name__ == "__main__":
    main()
