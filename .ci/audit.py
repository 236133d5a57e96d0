"""Dependency audit for .ci/run: pip-audit over every pinned package (constraints.txt), read so that an advisory
service we cannot reach is said plainly instead of passing as "no known vulnerabilities".

pip-audit asks PyPI's JSON API for each name and version. Where that API is unreachable, or (as behind some
mirrors) answers "not found" for every release, pip-audit still exits 0 and prints "No known vulnerabilities found"
with every package skipped. Exit status here: 1 when a vulnerability is found, else 0 (audited, or could not audit:
the printed line says which)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def summarize(report: dict | None, stderr: str) -> tuple[int, list[str]]:
    """(exit status, lines to print) for one pip-audit run's JSON report (None when it wrote none)."""
    if report is None:
        last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "no output")
        return 0, [f"dependency audit: NOT DONE, the advisory service could not be reached ({last[-200:]})"]
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    vulnerable = [d for d in deps if d.get("vulns")]
    if deps and len(skipped) == len(deps):
        return 0, [f"dependency audit: NOT DONE, the advisory service had no data for any of the {len(deps)} "
                   f"pinned packages (e.g. {skipped[0]['skip_reason']!r}); run `.venv/bin/pip-audit --disable-pip "
                   f"--no-deps -r constraints.txt` where PyPI's JSON API is reachable"]
    lines = []
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed release yet"
            lines.append(f"  {dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixes})")
    audited = len(deps) - len(skipped)
    note = f"; {len(skipped)} not audited: {', '.join(d['name'] for d in skipped)}" if skipped else ""
    if vulnerable:
        return 1, [f"dependency audit: FAILED, {len(vulnerable)} of {audited} audited packages have known "
                   f"vulnerabilities{note}", *lines]
    return 0, [f"dependency audit: {audited} pinned packages, no known vulnerabilities{note}"]


def main() -> int:
    pip_audit = Path(sys.executable).parent / "pip-audit"
    env = dict(os.environ)
    if env.get("PIP_CERT") and not env.get("REQUESTS_CA_BUNDLE"):
        env["REQUESTS_CA_BUNDLE"] = env["PIP_CERT"]  # the CA bundle pip is told to trust, for pip-audit's requests
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "audit.json"
        # Every package is pinned in constraints.txt (a full freeze), so no resolution (--no-deps, --disable-pip).
        result = subprocess.run(
            [str(pip_audit), "--disable-pip", "--no-deps", "-r", str(ROOT / "constraints.txt"),
             "--progress-spinner", "off", "--format", "json", "--output", str(output)],
            capture_output=True, text=True, env=env, timeout=600)
        try:
            report = json.loads(output.read_text())
        except (OSError, ValueError):
            report = None
    status, lines = summarize(report, result.stderr)
    print("\n".join(lines), file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
