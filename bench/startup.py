"""How long the commands take to start, against `python -c "import click"` in the same run.

Targets (issue: a fast start): `campaign --help` ≤ 2× the baseline, `campaign status` on the sample
≤ 4×. Each command runs `--runs` times, alternating with the baseline; the medians are compared.

`campaign status` is measured on a copy of the sample as organisers run it, proofed and approved
(set up before timing, not timed): while no input file changed since the approval, status takes
the recipients from the approval's record instead of reading the spreadsheet (campaign.recorded).
`status merci-signataires (sent)`: the thank-you campaign, approved and sent to the local sink
(712 in the log: the counts table, the bounce list). `status (inputs changed)` is the same copy with one byte added to the letter: status then reads
every input again, as it did always before.

    .venv/bin/python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import socket
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


def _send_thanks(campaign: str, project: Path) -> None:
    """Send the thank-you campaign (712 emails) to the local sink: a status with a full log."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = project / "settings.yaml"
    settings.write_text(
        settings.read_text(encoding="utf-8").replace("port: 8025", f"port: {port}"),
        encoding="utf-8",
    )
    sink = subprocess.Popen(
        [campaign, "sink", "--port", str(port)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sink.stdout is not None
        for line in sink.stdout:
            if "sink listening" in line:
                break
        for command in (
            ["proof", "merci-signataires"],
            ["approve", "merci-signataires", "--by", "bench"],
        ):
            subprocess.run([campaign, *command], cwd=project, check=True, capture_output=True)
        subprocess.run(
            [campaign, "send", "merci-signataires", "-q"], cwd=project, capture_output=True
        )
    finally:
        sink.terminate()
        sink.wait(10)
    shown = subprocess.run(
        [campaign, "status", "merci-signataires"], cwd=project, capture_output=True, text=True
    )
    if "delivery log" not in shown.stdout:
        raise SystemExit(f"the thank-you campaign was not sent: {shown.stdout}{shown.stderr}")
    print(" ".join(shown.stdout.split()[:60]))


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
        _send_thanks(campaign, project)
        shutil.copytree(project, changed)
        letter = changed / "letters" / "lettre-hopitaux.md"
        letter.write_text(letter.read_text(encoding="utf-8") + "\n", encoding="utf-8")
        commands = {
            "baseline: python -c 'import click'": ([python, "-c", "import click"], project),
            "campaign --help": ([campaign, "--help"], project),
            "campaign status": ([campaign, "status"], project),
            "campaign status merci-signataires (sent)": (
                [campaign, "status", "merci-signataires"],
                project,
            ),
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
