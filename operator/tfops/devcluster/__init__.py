"""A real Kubernetes control plane on loopback, for tests, benchmarks and the demo.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (fake nodes
whose pods reach Running) and metrics-server (PodMetrics from kwok's simulated
usage), built from Go modules by `hack/build-control-plane.sh` and supervised
here as child processes. Never used by the operator at run time.
"""

from tfops.devcluster.binaries import find_control_plane
from tfops.devcluster.cluster import ClusterError, LocalCluster

__all__ = ["ClusterError", "LocalCluster", "find_control_plane"]
