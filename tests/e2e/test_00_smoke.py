"""Smoke test: the docker CLI and docker-py reach berthd and negotiate API 1.50."""

from __future__ import annotations

import json
from typing import Any

from testkit.berthd import DockerCLI


def test_docker_version_negotiates_api_1_50(docker: DockerCLI, dockerpy: Any) -> None:
    out = docker("version", "--format", "{{json .}}").stdout
    version = json.loads(out)
    server = version["Server"]
    assert server is not None, out
    assert server["ApiVersion"] == "1.50"
    # DESIGN.md section 2: the gateway serves API 1.24 to 1.50.
    assert server["MinAPIVersion"] == "1.24"
    assert server["Os"] == "linux"
    # The CLI 28.2 speaks at most 1.50, so negotiation lands there.
    assert version["Client"]["ApiVersion"] == "1.50"
    assert dockerpy.version()["ApiVersion"] == "1.50"
    assert dockerpy.api.api_version == "1.50"
