"""Time `campaign check` on 100,000 recipients, as .csv and as .xlsx, against pandas alone.

    .venv/bin/python bench/check_scale.py [--rows 100000] [--repeat 3] [--keep DIR]

Writes a throw-away project (the sample hospital letter, fictional recipients at example.org) in a
temporary folder, then runs `campaign check` on it as a subprocess and records its wall time and
peak memory (the largest process's maximum resident set size, from wait4, and the sampled sum
over the process and its merge workers). The baseline, measured in the
same run on the same file, is a subprocess that only imports pandas and reads the spreadsheet as
text: the ratio check/baseline is the cost of validation (addresses, duplicates, headers) and of the
dry merge of every letter. Targets (issue 2): under 10 s and under 1 GiB per run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from openpyxl import Workbook

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = Path(sys.executable).parent / "campaign"
TARGET_SECONDS = 10.0
TARGET_BYTES = 1 << 30

HEADERS = [
    "Civilité",
    "Prénom",
    "Nom",
    "Fonction",
    "Établissement",
    "Adresse",
    "Code postal",
    "Ville",
    "Courriel",
]
FIRST = ["Camille", "Élise", "Hélène", "Inès", "Antoine", "Benoît", "Étienne", "François", "Noël"]
LAST = ["Arnaud", "Barbier", "Carré", "Delorme", "Guérin", "Lemaître", "Marchand", "Noël", "Roux"]
CITIES = [
    ("01000", "Bourg-en-Bresse"),
    ("25000", "Besançon"),
    ("75013", "Paris"),
    ("97100", "Basse-Terre"),
]

SETTINGS = """\
sender: {name: Collectif, email: collectif@example.org}
campaigns:
  csv:
    letter: letters/lettre-hopitaux.md
    recipients: recipients/destinataires.csv
    email_column: Courriel
    required_columns: [Nom, Établissement, Adresse, Code postal, Ville]
    to_name: "{{ prenom }} {{ nom }}"
    subject: "Arrêté du 21 avril 2020 et Health Data Hub : {{ etablissement }}"
  xlsx:
    letter: letters/lettre-hopitaux.md
    recipients: recipients/destinataires.xlsx
    email_column: Courriel
    required_columns: [Nom, Établissement, Adresse, Code postal, Ville]
    to_name: "{{ prenom }} {{ nom }}"
    subject: "Arrêté du 21 avril 2020 et Health Data Hub : {{ etablissement }}"
"""


def rows(count: int) -> list[list[str]]:
    """`count` fictional hospital directors, every address unique, deterministic."""
    out = []
    for i in range(count):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        postcode, city = CITIES[i % len(CITIES)]
        female = i % len(FIRST) < 4
        out.append(
            [
                "Madame" if female else "Monsieur",
                first,
                last,
                "Directrice" if female else "Directeur",
                f"Centre hospitalier n° {i} de {city}",
                f"{i % 200 + 1} rue de l'Hôpital",
                postcode,
                city,
                f"direction.{i}@ch-{i % 500}.example.org",
            ]
        )
    return out


def write_project(root: Path, count: int) -> None:
    (root / "recipients").mkdir(parents=True)
    shutil.copytree(REPO / "letters", root / "letters")
    (root / "settings.yaml").write_text(SETTINGS, encoding="utf-8")
    data = rows(count)
    with (root / "recipients" / "destinataires.csv").open("w", encoding="cp1252", newline="") as f:
        f.write(";".join(HEADERS) + "\r\n")
        f.writelines(";".join(r) + "\r\n" for r in data)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Destinataires")
    sheet.append(HEADERS)
    for r in data:
        sheet.append(r)
    book.save(root / "recipients" / "destinataires.xlsx")


class TreeMemory(threading.Thread):
    """Sample the memory of a process and its descendants (the merge workers) until it ends.

    Summed as PSS, so that the pages a worker shares copy-on-write with its parent count once;
    ru_maxrss, the other figure, is the largest single process.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, sum(pss(p) for p in descendants(self.pid)))
            time.sleep(0.1)  # reading smaps_rollup walks page tables: not too often


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (Linux /proc)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the process ended meanwhile
                pending += [int(c) for c in task.read_text().split()]
    return found


def pss(pid: int) -> int:
    """The proportional set size: shared pages divided among the processes sharing them."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    line = next((x for x in rollup.splitlines() if x.startswith("Pss:")), "Pss: 0 kB")
    return int(line.split()[1]) * 1024


def measure(command: list[str], cwd: Path) -> tuple[float, int, int, str, float, int]:
    """Run `command`: wall time, peak RSS, exit code, output, CPU time, peak RSS of its tree."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreeMemory(child.pid)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        sampler.running = False
        sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    cpu = usage.ru_utime + usage.ru_stime  # workers included; barely moved by other processes
    peak = usage.ru_maxrss * 1024  # ru_maxrss is in KiB
    return elapsed, peak, child.returncode, text, cpu, sampler.peak


def baseline_command(path: Path) -> list[str]:
    if path.suffix == ".csv":
        read = (
            f"pd.read_csv({str(path)!r}, sep=';', dtype=str, encoding='cp1252', "
            "keep_default_na=False)"
        )
    else:
        read = f"pd.read_excel({str(path)!r}, engine='calamine', dtype=object)"
    return [sys.executable, "-c", f"import pandas as pd; frame = {read}; assert len(frame)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the project here and keep it")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="check-scale-"))
    try:
        start = time.perf_counter()
        write_project(folder, args.rows)
        print(
            f"wrote {args.rows:,} recipients (.csv and .xlsx) in {time.perf_counter() - start:.1f} s"
        )
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average {load}"
        )
        missed = False
        for name in ("csv", "xlsx"):
            sheet = folder / "recipients" / f"destinataires.{name}"
            check_runs, base_runs = [], []
            for _ in range(args.repeat):
                check_runs.append(
                    measure(
                        [str(CAMPAIGN), "--settings", "settings.yaml", "check", name, "--json"],
                        folder,
                    )
                )
                base_runs.append(measure(baseline_command(sheet), folder))
            for _, _, code, text, _, _ in check_runs:
                if code != 0:
                    sys.exit(f"campaign check {name} exited {code}:\n{text[-2000:]}")
            report = json.loads(check_runs[-1][3])
            assert report["recipients"] == report["ready"] == args.rows, report
            check_s = statistics.median(r[0] for r in check_runs)
            best_s = min(r[0] for r in check_runs)
            base_s = statistics.median(r[0] for r in base_runs)
            peak = max(r[1] for r in check_runs)
            tree = max(r[5] for r in check_runs)
            base_peak = max(r[1] for r in base_runs)
            check_cpu = statistics.median(r[4] for r in check_runs)
            base_cpu = statistics.median(r[4] for r in base_runs)
            ok = check_s < TARGET_SECONDS and max(peak, tree) < TARGET_BYTES
            missed |= not ok
            print(
                f"{name:>4}: check {check_s:5.2f} s (best {best_s:5.2f} s), peak {peak / 2**20:4.0f} MiB "
                f"(all processes, PSS: {tree / 2**20:4.0f} MiB) | "
                f"pandas alone {base_s:5.2f} s, {base_peak / 2**20:4.0f} MiB | "
                f"ratio {check_s / base_s:4.1f}x time, {peak / base_peak:3.1f}x memory | "
                f"CPU {check_cpu:5.2f} s vs {base_cpu:4.2f} s ({check_cpu / base_cpu:4.1f}x) | "
                f"{args.rows / check_s:,.0f} rows/s | "
                f"target <{TARGET_SECONDS:.0f} s, <1 GiB: {'met' if ok else 'MISSED'}"
            )
        sys.exit(1 if missed else 0)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
