"""The printed result: Markdown tables under a header naming the machine and the date."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    """One benchmark's figures: a titled Markdown table with notes below it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The table as Markdown (first column left-aligned, the rest right-aligned)."""
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join([":---"] + ["---:"] * (len(self.columns) - 1)) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines)


@dataclass
class Text:
    """A titled block of preformatted text (profiles)."""

    title: str
    body: str
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The block as a fenced Markdown code block under its title."""
        lines = [f"### {self.title}", "", "```", self.body.rstrip(), "```"]
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines)


Section = Table | Text


def _cpu_model() -> str:
    text = Path("/proc/cpuinfo").read_text()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown CPU"


def _version(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def machine() -> str:
    """One paragraph: date, CPUs, CPU model, memory, Python, and the tools' versions."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    wrk = _version(["wrk", "--version"], r"wrk (\S+)")
    pushgateway = _version(["prometheus-pushgateway", "--version"], r"version (\S+)")
    return (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC · "
        f"nproc {os.cpu_count()} · {_cpu_model()} · {pages / 2**30:.0f} GiB RAM · "
        f"Python {platform.python_version()} · Linux {platform.release()} · "
        f"wrk {wrk} · pushgateway {pushgateway}"
    )


def revision() -> str:
    """The commit measured, and whether the exporter's code differs from it."""
    root = Path(__file__).resolve().parents[2]
    commit = _version(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], r"(\S+)")
    changed = _version(["git", "-C", str(root), "status", "--porcelain", "--", "exporter"], r"(.+)")
    return commit if changed == "unknown" else f"{commit} with uncommitted changes in exporter/"


def ms(seconds: float) -> str:
    """Seconds shown in milliseconds, three significant digits."""
    value = seconds * 1000
    return number(value) if value >= 100 else f"{value:.3g}"


def size(count: float) -> str:
    """Bytes in KiB or MiB."""
    if count >= 2**20:
        return f"{count / 2**20:.1f} MiB"
    return f"{count / 2**10:.0f} KiB"


def number(value: float) -> str:
    """An integer with thousands separated by thin spaces, as the issue writes them."""
    return f"{value:,.0f}".replace(",", " ")
