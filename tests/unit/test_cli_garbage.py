"""Every `tfops` command given garbage (bad arguments, bad files, a broken or
unreachable kubeconfig) prints one line on stderr and exits with a documented
non-zero code: never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

GARBAGE = bytes(range(256)) * 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("garbage")
    made = {
        "binary": GARBAGE,
        "empty": b"",
        "yaml": b"spec: [unclosed\n  - : :\n",
        "nan": b"timestamp_seconds,working_set_bytes,limit_bytes\n0,nan,100\n",
        "inf": b"timestamp_seconds,working_set_bytes,limit_bytes\n0,inf,100\n",
        "words": b"timestamp_seconds,working_set_bytes,limit_bytes\nzero,one,two\n",
        "invalid-spec": (
            b"apiVersion: serving.tfops.dev/v1alpha1\nkind: ModelServer\n"
            b"metadata: {name: x}\nspec: {models: [{name: m, basePath: s3://b/m}], "
            b"replicas: -1}\n"
        ),
        "bad-name": (
            b"apiVersion: serving.tfops.dev/v1alpha1\nkind: ModelServer\n"
            b"metadata: {name: Not_Valid}\nspec: {models: [{name: m, basePath: gs://b/m}]}\n"
        ),
        "not-a-modelserver": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        "kubeconfig-random": GARBAGE,
        "kubeconfig-yaml": b"apiVersion: v1\nclusters: {oops\n",
        "kubeconfig-empty-doc": b"{}\n",
        "kubeconfig-refused": (
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{_free_port()}', "
            "insecure-skip-tls-verify: true}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
            "users: [{name: u, user: {token: x}}]\n"
        ).encode(),
    }
    paths = {}
    for name, content in made.items():
        paths[name] = root / name
        paths[name].write_bytes(content)
    return paths


def _tfops(
    *args: str, kubeconfig: Path | str | None = None, stdout: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig or "/nonexistent/kubeconfig")}
    env.pop("TFOPS_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "tfops", *args],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


# The start of every promote command line below; only the version and options vary.
PROMOTE = ["promote", "x", "--model", "m", "--version"]

CASES = [
    # (id, arguments with {file} placeholders, kubeconfig file or None, exit codes)
    ("unknown-command", ["bogus"], None, {2}),
    ("run-bad-number", ["run", "--resync-seconds", "soon"], None, {2}),
    ("run-namespace-pattern", ["run", "-n", "ml", "-n", "team-*"], None, {2}),
    ("run-no-kubeconfig", ["run", "--metrics-port", "0"], None, {1}),
    ("run-random-kubeconfig", ["run", "--metrics-port", "0"], "kubeconfig-random", {1}),
    ("run-broken-yaml-kubeconfig", ["run", "--metrics-port", "0"], "kubeconfig-yaml", {1}),
    ("run-empty-kubeconfig", ["run", "--metrics-port", "0"], "kubeconfig-empty-doc", {1}),
    ("run-refused", ["run", "--metrics-port", "0"], "kubeconfig-refused", {1}),
    ("render-no-file", ["render"], None, {2}),
    ("render-missing-file", ["render", "-f", "/nonexistent.yaml"], None, {2}),
    ("render-binary", ["render", "-f", "{binary}"], None, {2}),
    ("render-empty", ["render", "-f", "{empty}"], None, {2}),
    ("render-broken-yaml", ["render", "-f", "{yaml}"], None, {2}),
    ("render-invalid-spec", ["render", "-f", "{invalid-spec}"], None, {2}),
    ("render-bad-name", ["render", "-f", "{bad-name}"], None, {2}),
    ("render-no-modelserver", ["render", "-f", "{not-a-modelserver}"], None, {2}),
    ("render-bad-output", ["render", "-f", "{invalid-spec}", "-o", "xml"], None, {2}),
    ("replay-missing", ["guard", "replay", "/nonexistent.csv"], None, {2}),
    ("replay-binary", ["guard", "replay", "{binary}"], None, {2}),
    ("replay-empty", ["guard", "replay", "{empty}"], None, {2}),
    ("replay-nan", ["guard", "replay", "{nan}"], None, {2}),
    ("replay-inf", ["guard", "replay", "{inf}"], None, {2}),
    ("replay-words", ["guard", "replay", "{words}"], None, {2}),
    ("replay-bad-option", ["guard", "replay", "{nan}", "--warmup-seconds", "x"], None, {2}),
    ("promote-no-args", ["promote"], None, {2}),
    ("promote-negative-version", [*PROMOTE, "-5", "--dry-run"], None, {2}),
    ("promote-bad-label", [*PROMOTE, "1", "--label", "a-b"], None, {2}),
    ("promote-bad-timeout", [*PROMOTE, "1", "--timeout", "soon"], None, {2}),
    ("promote-no-kubeconfig", [*PROMOTE, "1"], None, {1}),
    ("promote-random-kubeconfig", [*PROMOTE, "1"], "kubeconfig-random", {1}),
    ("promote-broken-yaml-kubeconfig", [*PROMOTE, "1"], "kubeconfig-yaml", {1}),
    ("promote-refused", [*PROMOTE, "1"], "kubeconfig-refused", {1}),
    ("inspect-missing", ["inspect", "/nonexistent/1", "--no-load"], None, {1}),
    ("inspect-binary", ["inspect", "{binary}", "--no-load"], None, {1}),
    ("dev-cluster-bad-nodes", ["dev-cluster", "--nodes", "many"], None, {2}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "kubeconfig", "codes"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_garbage_gets_one_line_and_a_documented_exit_code(
    files: dict[str, Path], args: list[str], kubeconfig: str | None, codes: set[int]
) -> None:
    resolved = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    result = _tfops(*resolved, kubeconfig=files[kubeconfig] if kubeconfig else None)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode in codes, (result.returncode, output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tfops"), lines[0]


def test_a_full_stdout_is_one_line_not_a_traceback() -> None:
    with open("/dev/full", "w") as full:
        result = _tfops("crd", stdout=full.fileno())
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "tfops crd: No space left on device"


def test_a_namespace_pattern_is_refused_naming_the_flag_and_the_fix() -> None:
    result = _tfops("run", "--namespace", "Team_A")
    assert result.returncode == 2
    assert "--namespace 'Team_A' is not a namespace name" in result.stderr
    assert "repeat --namespace for each" in result.stderr


@pytest.mark.parametrize(
    "flag", ["--resync-seconds", "--model-status-timeout-seconds", "--guard-checkpoint-seconds"]
)
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_duration_flag_that_is_not_a_duration_is_refused_naming_it(flag: str, value: str) -> None:
    result = _tfops("run", flag, value)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"tfops run: {flag} " in result.stderr and "above 0" in result.stderr


def test_no_command_prints_the_help_and_exits_2() -> None:
    result = _tfops()
    assert result.returncode == 2 and "usage: tfops" in result.stderr


FIELDS_FIX = "write {pod_ip}, {namespace} or {pod}"
URL_FIX = "e.g. http://{pod_ip}:8501"


@pytest.mark.parametrize(
    ("template", "said", "fix"),
    [
        ("http://{podip}:8501", "{podip} is not a field it can use", FIELDS_FIX),
        ("http://{0}:8501", "a numbered field", FIELDS_FIX),
        ("http://{pod_ip:8501", "unmatched '{'", FIELDS_FIX),
        ("ftp://{pod_ip}", "must be an http:// or https:// URL", URL_FIX),
        ("{pod_ip}:8501", "must be an http:// or https:// URL", URL_FIX),
    ],
)
def test_a_bad_serving_url_template_is_refused_at_start_naming_the_fix(
    template: str, said: str, fix: str
) -> None:
    result = _tfops("run", "--serving-url-template", template)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--serving-url-template {template!r}: " in result.stderr
    assert said in result.stderr and fix in result.stderr
