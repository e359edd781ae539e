"""Run ``pip-audit`` on this environment against the one package index this machine reaches.

Why a wrapper: pip-audit's ``pypi`` service asks ``/pypi/NAME/VERSION/json`` per dependency,
which the reachable index answers 404 (so every dependency would be "not found" and the audit an
empty pass), and its ``osv`` service needs api.osv.dev, which is not reachable. The index does
answer ``/pypi/NAME/json``, whose ``vulnerabilities`` list is the latest release's. So this
script serves pip-audit's OSV query protocol on 127.0.0.1 from those answers and runs
``pip-audit -s osv --osv-url ...`` against it:

* installed version == the latest release: the list is exactly the installed version's;
* an older installed version: the latest release's unfixed vulnerabilities are reported too
  (conservative), and the dependency is named in a "partially audited" line, since what was
  fixed between it and the latest release cannot be seen here;
* a dependency the index does not know (a local package): "not on the index" line.

IDs listed in ``.ci/pip-audit-ignore.txt`` (one per line, ``# why`` after it) are ignored; the
exit code is pip-audit's. Usage: ``python .ci/pip_audit_pypi.py [extra pip-audit args]``.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess  # nosec B404 - runs pip-audit itself, fixed arguments
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

INDEX = os.environ.get("AUREA_AUDIT_INDEX", "https://pypi.org/pypi")
IGNORE_FILE = Path(__file__).with_name("pip-audit-ignore.txt")
partial: list[str] = []
missing: list[str] = []
_lock = threading.Lock()


def _project(name: str) -> dict[str, Any] | None:
    ctx = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
    url = f"{INDEX}/{name}/json"
    try:
        with urllib.request.urlopen(url, timeout=30, context=ctx) as resp:  # nosec B310 - https
            data: dict[str, Any] = json.load(resp)
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _osv(name: str, vuln: dict[str, Any]) -> dict[str, Any]:
    events: list[dict[str, str]] = [{"introduced": "0"}]
    events += [{"fixed": v} for v in vuln.get("fixed_in") or []]
    return {
        "id": vuln["id"],
        "aliases": vuln.get("aliases") or [],
        "summary": vuln.get("summary") or vuln.get("details") or "",
        "withdrawn": vuln.get("withdrawn"),
        "affected": [
            {
                "package": {"name": name, "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
    }


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        name, version = query["package"]["name"], query["version"]
        project = _project(name)
        vulns: list[dict[str, Any]] = []
        if project is None:
            with _lock:
                missing.append(f"{name} {version}")
        else:
            latest = project["info"]["version"]
            if latest != version:
                with _lock:
                    partial.append(f"{name} {version} (latest {latest})")
            vulns = [_osv(name, v) for v in project.get("vulnerabilities") or []]
        body = json.dumps({"vulns": vulns} if vulns else {}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _ignored() -> list[str]:
    if not IGNORE_FILE.exists():
        return []
    ids = (line.split("#", 1)[0].strip() for line in IGNORE_FILE.read_text().splitlines())
    return [i for i in ids if i]


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    cmd = [
        sys.executable, "-m", "pip_audit", "-s", "osv", "--osv-url", url,
        "--skip-editable", "--progress-spinner", "off", "--desc", "on",
        *(arg for i in _ignored() for arg in ("--ignore-vuln", i)),
        *sys.argv[1:],
    ]  # fmt: skip
    try:
        code = subprocess.run(cmd, check=False).returncode  # nosec B603 - fixed command
    finally:
        server.shutdown()
    for line in sorted(partial):
        print(f"pip-audit: partially audited (older than the index's latest): {line}")
    for line in sorted(missing):
        print(f"pip-audit: not on the index (not audited): {line}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
