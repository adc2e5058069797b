"""An OSV vulnerability service (https://google.github.io/osv.dev/api/): the
records `uv audit` names, for what its report leaves out (severity)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from raybake.errors import ToolError

TIMEOUT = 60  # one record; the service just answered uv's batch query


def vulnerability(service_url: str, vuln_id: str) -> dict[str, Any] | None:
    """The OSV record ``vuln_id`` (GET /v1/vulns/ID); None when the service has none by that ID."""
    url = f"{service_url.rstrip('/')}/v1/vulns/{urllib.parse.quote(vuln_id, safe='')}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                    timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        problem = f"HTTP {exc.code} {exc.reason}"
    except (OSError, ValueError) as exc:  # unreachable, timed out, not JSON
        problem = f"{type(exc).__name__}: {exc}"
    raise ToolError(f"cannot read the record of {vuln_id} from the vulnerability service {service_url} ({problem})",
                    fix="check network access to it, or set RAYBAKE_AUDIT_SERVICE_URL (--service-url) to an "
                        "OSV-compatible service this machine can reach")
