"""What the tests, the benchmarks and the demo share: the TF Serving stand-in
(`standin`), helpers that drive fleets on the local control plane (`fleet`), the
memory trace corpus (`traces`) and `wait_for`. Never imported by the operator
(`make lint` checks it); `fleet` reads the examples and CRD of a tfops checkout."""

from pathlib import Path

# The checkout this package runs from (operator/tfops/testing/ -> the repository).
REPO = Path(__file__).resolve().parents[3]
