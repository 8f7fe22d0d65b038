"""Supply-chain steps over the hash lock: the image's subset, the audit gate, the image check.

    python scripts/supply_chain.py subset  LOCK [--python 3.11.2] -o OUT
    python scripts/supply_chain.py audit   LOCK [--python 3.11.2] [--ignore FILE] [--strict]
    python scripts/supply_chain.py compare LOCK IMAGE_PACKAGES.json [--python 3.11.2]
    python scripts/supply_chain.py sbom-os SBOM.json DPKG.tsv [--image-id ID]

``subset``: the lock is universal (every Python >= 3.11, every platform); the image installs the
entries whose markers hold for its Python on linux/x86_64. That subset, hashes kept, is what the
SBOM describes and what the audit checks.

``audit`` runs pip-audit over the subset and decides; it never trusts pip-audit's own summary,
which says "No known vulnerabilities found" even when it could check nothing:

* PASS       every package was checked, no known vulnerability (or only ignored ones);
* FAIL       a known vulnerability that the ignore file does not cover (exit 1), or the ignore
             file is malformed or an entry's ``until`` date has passed (exit 2), or a
             vulnerability source answered but some packages could not be checked (exit 1);
* UNCHECKED  no vulnerability source is reachable (PyPI's JSON API and OSV both fail here: the
             machine reaches only package indexes). Said loudly; exit 0 so that a CI which
             cannot reach the data stays usable, exit 3 with ``--strict`` (or AUDIT_STRICT=1),
             which any CI with network access should set.

The ignore file (TOML)::

    [[ignore]]
    id = "GHSA-xxxx-xxxx-xxxx"       # as pip-audit reports it (GHSA-, PYSEC-, CVE-)
    package = "torch"
    reason = "why it does not apply here"
    until = 2026-12-31               # after this date the entry no longer ignores anything

``compare``: the names and versions installed in the image (a JSON list of [name, version]) must
be exactly the subset, apart from voxproof itself.

``sbom-os``: cyclonedx-py describes the Python packages (from the subset, with their hashes); this
adds the image's Debian packages (``dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n'``)
as ``pkg:deb`` components, and the image id as a property, so the SBOM covers the whole image.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from packaging.markers import Marker
from packaging.utils import canonicalize_name

PYPI_JSON: Final = "https://pypi.org/pypi/{name}/{version}/json"
OSV_QUERY: Final = "https://api.osv.dev/v1/query"
#: Packages in the image that the lock does not list, on purpose.
NOT_LOCKED: Final = frozenset({"voxproof"})
_PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")


# --- the lock ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pin:
    """One locked requirement: ``name==version ; marker`` and its hashes."""

    name: str
    version: str
    marker: str | None
    hashes: tuple[str, ...]

    def line(self) -> str:
        """The requirement as pip reads it, hashes included."""
        marker = f" ; {self.marker}" if self.marker else ""
        hashes = "".join(f" \\\n    --hash={h}" for h in self.hashes)
        return f"{self.name}=={self.version}{marker}{hashes}"


def read_lock(text: str) -> list[Pin]:
    """Parse a ``--generate-hashes`` requirements file (uv or pip-tools style)."""
    pins: list[Pin] = []
    for logical in re.sub(r"\\\n", " ", text).splitlines():
        body = logical.strip()
        if not body or body.startswith("#"):
            continue
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", body))
        requirement, _, marker = body.split("--hash", 1)[0].partition(";")
        match = _PIN.fullmatch(requirement.strip())
        if match is None:
            raise ValueError(f"not a pinned requirement: {requirement.strip()[:80]}")
        pins.append(Pin(match["name"], match["version"], marker.strip() or None, hashes))
    return pins


def environment(python: str) -> dict[str, str]:
    """PEP 508 marker values for CPython ``python`` (e.g. "3.11.2") on linux x86_64."""
    parts = python.split(".")
    return {
        "python_version": ".".join(parts[:2]),
        "python_full_version": python if len(parts) >= 3 else f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_version": "",
        "implementation_version": python,
        "extra": "",
    }


def subset(pins: Iterable[Pin], python: str) -> list[Pin]:
    """The pins whose markers hold for ``python`` on linux/x86_64."""
    env = environment(python)
    return [p for p in pins if p.marker is None or Marker(p.marker).evaluate(env)]


# --- the audit -----------------------------------------------------------------------------------
class IgnoreFileError(ValueError):
    """The ignore file is malformed: an entry lacks id, package, reason or until."""


@dataclass(frozen=True)
class Ignore:
    """One accepted vulnerability, with why and until when."""

    id: str
    package: str
    reason: str
    until: dt.date


def read_ignores(path: Path | None) -> list[Ignore]:
    """Read and validate the ignore file; a missing file means no ignores."""
    if path is None or not path.exists():
        return []
    data = tomllib.loads(path.read_text())
    entries = data.get("ignore", [])
    if not isinstance(entries, list):
        raise IgnoreFileError(f"{path.name}: 'ignore' must be an array of tables")
    ignores = []
    for n, entry in enumerate(entries, 1):
        missing = [k for k in ("id", "package", "reason", "until") if not entry.get(k)]
        if missing:
            raise IgnoreFileError(f"{path.name}: entry {n} lacks {', '.join(missing)}")
        if not isinstance(entry["until"], dt.date) or isinstance(entry["until"], dt.datetime):
            raise IgnoreFileError(f"{path.name}: entry {n}: until must be a date (YYYY-MM-DD)")
        if len(str(entry["reason"]).strip()) < 10:
            raise IgnoreFileError(f"{path.name}: entry {n}: the reason must say why, in words")
        ignores.append(
            Ignore(str(entry["id"]), str(entry["package"]), str(entry["reason"]), entry["until"])
        )
    return ignores


@dataclass
class Verdict:
    """The audit's outcome, and everything needed to explain it."""

    status: str = "PASS"
    exit_code: int = 0
    checked: int = 0
    unchecked: list[str] = field(default_factory=list)
    vulnerabilities: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def decide(
    report: dict[str, Any] | None,
    ignores: Sequence[Ignore],
    sources: dict[str, bool],
    *,
    today: dt.date,
    strict: bool,
) -> Verdict:
    """Turn pip-audit's JSON report (None: it could not run) into PASS, FAIL or UNCHECKED."""
    verdict = Verdict(sources=dict(sources))
    by_id = {i.id: i for i in ignores}
    for dep in (report or {}).get("dependencies", []):
        if "skip_reason" in dep:
            verdict.unchecked.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        verdict.checked += 1
        for vuln in dep.get("vulns", []):
            found = {
                "package": dep["name"],
                "version": dep.get("version"),
                "id": vuln["id"],
                "aliases": vuln.get("aliases", []),
                "fix_versions": vuln.get("fix_versions", []),
            }
            ids = [vuln["id"], *vuln.get("aliases", [])]
            ignore = next((by_id[i] for i in ids if i in by_id), None)
            if ignore is None or canonicalize_name(ignore.package) != canonicalize_name(
                dep["name"]
            ):
                verdict.vulnerabilities.append(found)
            elif ignore.until < today:
                verdict.vulnerabilities.append(
                    {**found, "note": f"ignore entry expired {ignore.until}"}
                )
            else:
                verdict.ignored.append(
                    {**found, "reason": ignore.reason, "until": str(ignore.until)}
                )
    if verdict.vulnerabilities:
        verdict.status, verdict.exit_code = "FAIL", 1
    elif not any(sources.values()) or report is None:
        verdict.status = "UNCHECKED"
        verdict.exit_code = 3 if strict else 0
        verdict.notes.append("no vulnerability source reachable: nothing was checked")
    elif verdict.unchecked:
        verdict.status, verdict.exit_code = "FAIL", 1
        verdict.notes.append("a vulnerability source answered, yet some packages were not checked")
    return verdict


def reachable(url: str, *, data: bytes | None = None, timeout: float = 10.0) -> bool:
    """True if ``url`` answers 200 (a POST when ``data`` is given)."""
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def probe_sources(sample: Pin) -> dict[str, bool]:
    """Which vulnerability sources answer for one real locked package."""
    version = sample.version.split("+", 1)[0]
    query = json.dumps({"package": {"name": sample.name, "ecosystem": "PyPI"}, "version": version})
    return {
        "pypi": reachable(PYPI_JSON.format(name=sample.name, version=version)),
        "osv": reachable(OSV_QUERY, data=query.encode()),
    }


def run_pip_audit(pins: Sequence[Pin], service: str, pip_audit: str) -> dict[str, Any] | None:
    """pip-audit over ``pins`` (local versions such as +cpu stripped: same upstream release)."""
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "audit.txt"
        req.write_text("\n".join(f"{p.name}=={p.version.split('+', 1)[0]}" for p in pins) + "\n")
        out = Path(tmp) / "report.json"
        proc = subprocess.run(
            [
                pip_audit,
                "-r",
                str(req),
                "--no-deps",
                "--disable-pip",
                "-s",
                service,
                "-f",
                "json",
                "-o",
                str(out),
                "--progress-spinner",
                "off",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if not out.exists():
            sys.stderr.write(proc.stderr[-2000:])
            return None
        return json.loads(out.read_text())


def banner(lines: Sequence[str]) -> str:
    """Text no one scrolls past."""
    bar = "#" * 78
    return "\n".join([bar, *(f"### {line}" for line in lines), bar])


def audit(args: argparse.Namespace) -> int:
    pins = subset(read_lock(Path(args.lock).read_text()), args.python)
    try:
        ignores = read_ignores(Path(args.ignore) if args.ignore else None)
    except (IgnoreFileError, tomllib.TOMLDecodeError) as err:
        print(f"audit: FAIL: {err}", file=sys.stderr)
        return 2
    strict = args.strict or os.environ.get("AUDIT_STRICT") == "1"
    sources = probe_sources(pins[0])
    service = next((name for name, ok in sources.items() if ok), None)
    report = run_pip_audit(pins, service, args.pip_audit) if service else None
    verdict = decide(report, ignores, sources, today=dt.date.today(), strict=strict)
    if args.output:
        Path(args.output).write_text(json.dumps(verdict.as_dict(), indent=2, default=str))
    print(f"audit: {len(pins)} locked packages for Python {args.python}; sources {sources}")
    for found in verdict.ignored:
        print(
            f"audit: ignored {found['id']} in {found['package']} until {found['until']}: "
            f"{found['reason']}"
        )
    for found in verdict.vulnerabilities:
        print(
            f"audit: VULNERABLE {found['package']} {found['version']}: {found['id']} "
            f"(fixed in {', '.join(found['fix_versions']) or 'no release yet'}) "
            f"{found.get('note', '')}"
        )
    if verdict.status == "UNCHECKED":
        state = {name: "ok" if ok else "unreachable" for name, ok in sources.items()}
        count = f"{len(pins)} packages NOT checked for vulnerabilities"
        reach = f"PyPI JSON API: {state['pypi']}, OSV: {state['osv']}"
        lines = [
            f"SUPPLY-CHAIN AUDIT: UNCHECKED ({count})",
            f"No vulnerability source answers here ({reach}).",
            "This is NOT a pass. Run `bash scripts/ci_image.sh audit` where they are reachable,",
            "or set AUDIT_STRICT=1 to make this state fail the build.",
        ]
        print(banner(lines))
    elif verdict.status == "FAIL":
        for note in verdict.notes + verdict.unchecked[:20]:
            print(f"audit: {note}")
        print(
            f"audit: FAIL ({len(verdict.vulnerabilities)} vulnerabilities, "
            f"{len(verdict.unchecked)} unchecked)"
        )
    else:
        print(
            f"audit: PASS: {verdict.checked} packages checked with {service}, "
            f"no known vulnerability ({len(verdict.ignored)} ignored with a reason)"
        )
    return verdict.exit_code


# --- subset, compare, SBOM ------------------------------------------------------------------
def write_subset(args: argparse.Namespace) -> int:
    pins = subset(read_lock(Path(args.lock).read_text()), args.python)
    text = "\n".join(p.line() for p in pins) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def compare(args: argparse.Namespace) -> int:
    locked = {
        (canonicalize_name(p.name), p.version)
        for p in subset(read_lock(Path(args.lock).read_text()), args.python)
    }
    installed = {(canonicalize_name(n), v) for n, v in json.loads(Path(args.installed).read_text())}
    installed = {(n, v) for n, v in installed if n not in NOT_LOCKED}
    extra, missing = sorted(installed - locked), sorted(locked - installed)
    for name, version in extra:
        print(f"compare: in the image but not locked: {name}=={version}")
    for name, version in missing:
        print(f"compare: locked but not in the image: {name}=={version}")
    print(
        f"compare: {'MISMATCH' if extra or missing else 'OK'}: "
        f"{len(installed)} packages in the image"
    )
    return 1 if extra or missing else 0


def add_os_packages(sbom: dict[str, Any], dpkg_tsv: str, image_id: str | None) -> dict[str, Any]:
    """Add the image's Debian packages (and its id) to a CycloneDX JSON document."""
    components = sbom.setdefault("components", [])
    for line in dpkg_tsv.splitlines():
        if not line.strip():
            continue
        name, version, arch = line.split("\t")
        quoted = urllib.parse.quote(version, safe="")
        purl = f"pkg:deb/debian/{name}@{quoted}?arch={arch}&distro=debian-12"
        components.append(
            {"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl}
        )
    if image_id:
        sbom.setdefault("metadata", {}).setdefault("properties", []).append(
            {"name": "voxproof:image-id", "value": image_id}
        )
    return sbom


def sbom_os(args: argparse.Namespace) -> int:
    path = Path(args.sbom)
    sbom = add_os_packages(json.loads(path.read_text()), Path(args.dpkg).read_text(), args.image_id)
    path.write_text(json.dumps(sbom, indent=2))
    print(f"sbom: {len(sbom['components'])} components in {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("subset", "audit", "compare"):
        cmd = sub.add_parser(name)
        cmd.add_argument("lock")
        cmd.add_argument("--python", default="3.11.2", help="the image's Python (default 3.11.2)")
        if name == "subset":
            cmd.add_argument("-o", "--output", default="-")
        if name == "audit":
            cmd.add_argument("--ignore", default="functions/audit-ignore.toml")
            cmd.add_argument("--strict", action="store_true", help="UNCHECKED fails (exit 3)")
            cmd.add_argument("--pip-audit", default="pip-audit")
            cmd.add_argument("-o", "--output", help="write the verdict as JSON")
        if name == "compare":
            cmd.add_argument("installed", help="JSON list of [name, version] from the image")
    os_cmd = sub.add_parser("sbom-os")
    os_cmd.add_argument("sbom")
    os_cmd.add_argument("dpkg", help="dpkg-query output: package, version, architecture (tabs)")
    os_cmd.add_argument("--image-id")
    args = parser.parse_args(argv)
    commands = {"subset": write_subset, "audit": audit, "compare": compare, "sbom-os": sbom_os}
    return commands[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
