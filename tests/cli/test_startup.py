"""``lossd serve`` start-up mistakes: each is one line on stderr naming what to change, a
non-zero exit, no traceback."""

from __future__ import annotations

import socket

import pytest

from tests.cli.support import lossd, one_line_error


def test_http_port_in_use(server) -> None:
    line = one_line_error(lossd("serve", "--host", "127.0.0.1", "--http-port",
                                str(server.http_port), "--grpc-port", "0"))
    assert f"127.0.0.1:{server.http_port}" in line and "in use" in line
    assert "--http-port / LOSSD_HTTP_PORT" in line


def test_grpc_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_error(lossd("serve", "--host", "127.0.0.1", "--http-port", "0",
                                    env={"LOSSD_GRPC_PORT": str(port)}))
    assert f"gRPC cannot listen on 127.0.0.1:{port}" in line
    assert "--grpc-port / LOSSD_GRPC_PORT" in line


@pytest.mark.parametrize("args, env, words", [
    (["--log-level", "loud"], {}, ["log_level", "--log-level / LOSSD_LOG_LEVEL",
                                   "debug, info, warning, error", "'loud'"]),
    (["--runs-store", "mongo"], {}, ["--runs-store / LOSSD_RUNS_STORE", "'sqlite' or 'redis'",
                                     "'mongo'"]),
    (["--http-port", "eighty"], {}, ["--http-port / LOSSD_HTTP_PORT", "integer", "'eighty'"]),
    ([], {"LOSSD_MAX_QUEUE": "-1"}, ["--max-queue / LOSSD_MAX_QUEUE", "greater than or equal"]),
    ([], {"LOSSD_HTTP_PROT": "8001"}, ["LOSSD_HTTP_PROT", "did you mean LOSSD_HTTP_PORT?"]),
    ([], {"lossd_grpc_prot": "1"}, ["lossd_grpc_prot", "did you mean LOSSD_GRPC_PORT?"]),
    ([], {"LOSSD_NOTHING_LIKE_IT": "1"}, ["unknown setting LOSSD_NOTHING_LIKE_IT"]),
    (["--http-prot", "8001"], {}, ["unrecognized arguments", "did you mean --http-port?"]),
    (["--tls-cert-file", "/no/such.pem"], {}, ["--tls-cert-file / LOSSD_TLS_CERT_FILE",
                                               "no such file"]),
], ids=["log-level", "runs-store", "not-an-int", "out-of-bounds", "env-typo",
        "env-lowercase", "env-unknown", "flag-typo", "missing-file"])
def test_a_bad_setting_is_one_line(args: list[str], env: dict[str, str],
                                   words: list[str]) -> None:
    done = lossd("serve", "--http-port", "0", "--grpc-port", "0", *args, env=env)
    line = one_line_error(done)
    assert done.returncode == 2 and line.startswith("lossd")
    for word in words:
        assert word in line, line


def test_a_host_that_is_not_this_machine() -> None:
    line = one_line_error(lossd("serve", "--host", "192.0.2.1", "--http-port", "0",
                                "--grpc-port", "0"))
    assert "REST cannot listen on 192.0.2.1:0" in line and "--host / LOSSD_HOST" in line


def test_each_mistake_is_a_line() -> None:
    done = lossd("serve", "--log-json", "--http-port", "-1", "--runs-store", "mongo",
                 env={"LOSSD_MAX_QUEUE": "zero"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert sorted(line.split(" (")[0] for line in done.stderr.splitlines()) == [
        "lossd: http_port", "lossd: max_queue", "lossd: runs_store"]


# what Kubernetes gives every pod in the namespace of deploy/k8s's ClusterIP Service "lossd"
SERVICE_LINKS = {
    "LOSSD_SERVICE_HOST": "10.96.0.7", "LOSSD_SERVICE_PORT": "8000",
    "LOSSD_SERVICE_PORT_HTTP": "8000", "LOSSD_PORT": "tcp://10.96.0.7:8000",
    "LOSSD_PORT_8000_TCP": "tcp://10.96.0.7:8000", "LOSSD_PORT_8000_TCP_PROTO": "tcp",
    "LOSSD_PORT_8000_TCP_PORT": "8000", "LOSSD_PORT_8000_TCP_ADDR": "10.96.0.7",
    "LOSSD_METRICS_SERVICE_HOST": "10.96.0.8",
}


def test_service_links_are_not_settings_but_look_alikes_are_refused() -> None:
    from lossd.serve import StartupError, check_environment
    check_environment(SERVICE_LINKS)
    for name, value in [("LOSSD_HTTPS_PORT", "8001"), ("LOSSD_PORT", "8001"),
                        ("LOSSD_SERVICE", "x")]:
        with pytest.raises(StartupError, match=f"unknown setting {name}"):
            check_environment({name: value})


def test_the_client_key_test_knobs_and_service_links_are_not_settings(spawn) -> None:
    running = spawn(env={"LOSSD_API_KEY": "client-side", "LOSSD_FUZZ_EXAMPLES": "3",
                         **SERVICE_LINKS})
    assert running.process.poll() is None
