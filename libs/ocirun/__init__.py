"""conmon + crun/runc driver: Docker-equivalent OCI specs, host detection and a thin runtime wrapper."""

from .host import CAPABILITIES, HostFacts, detect_host_facts
from .runtime import ContainerPaths, ExecSession, OciRuntime, connect_attach_path, parse_k8s_log_line
from .spec import (
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    ContainerSpec,
    Device,
    Mount,
    Namespace,
    Resources,
    Ulimit,
    build_exec_process,
    build_oci_spec,
)

__all__ = [
    "CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "ContainerPaths",
    "ContainerSpec",
    "Device",
    "ExecSession",
    "HostFacts",
    "Mount",
    "Namespace",
    "OciRuntime",
    "Resources",
    "Ulimit",
    "build_exec_process",
    "build_oci_spec",
    "connect_attach_path",
    "detect_host_facts",
    "parse_k8s_log_line",
]
