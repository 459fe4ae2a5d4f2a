"""A real Prometheus (built from Go modules by hack/build-tools.sh) on 127.0.0.1,
scraping the kubelet resource metrics kwok serves for each fake node: the same
`container_memory_working_set_bytes` series a cluster's Prometheus scrapes."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import yaml

from tfops.devcluster import LocalCluster
from tfops.devcluster.cluster import Component, free_port
from tfops.testing.support import wait_for

SCRAPE_SECONDS = 5


class Prometheus:
    def __init__(self, binary: Path, cluster: LocalCluster) -> None:
        self.binary = binary
        self.cluster = cluster
        self.port = free_port()
        self.workdir = cluster.workdir / "prometheus"
        self.component: Component | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s"},
            "scrape_configs": [
                {
                    "job_name": f"kubelet-{node}",
                    "scheme": "https",
                    "tls_config": {"insecure_skip_verify": True},
                    "metrics_path": f"/metrics/nodes/{node}/metrics/resource",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.cluster.ports.kwok}"]}],
                }
                for node in self.cluster.node_names
            ],
        }
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.component = Component(
            "prometheus",
            [
                str(self.binary),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=2h",
            ],
            self.cluster.workdir / "logs" / "prometheus.log",
        )
        self.component.start()
        wait_for(self._ready, timeout=60, what="Prometheus to be ready")
        return self

    def _ready(self) -> bool:
        assert self.component is not None
        if not self.component.alive():
            raise AssertionError(f"Prometheus exited:\n{self.component.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.component is not None and self.component.alive():
            assert self.component.process is not None
            self.component.process.terminate()
            self.component.process.wait(timeout=30)
