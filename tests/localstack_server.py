"""LocalStack, the tests' second emulator: the community edition in host mode (no Docker), started for a test
session of its own by the `aws_endpoint` fixture when pytest runs with ``--emulator=localstack``.

Test tooling, not product: the functions never ship an emulator, and `mediacanon local up` stays on moto. LocalStack
runs from its own virtualenv (``.venv-localstack``, pinned in requirements/localstack.txt, built by
``make test-localstack``; MEDIACANON_LOCALSTACK_PYTHON names another Python that has ``localstack-core``).

Only the live path's services run (S3, SQS, EventBridge, and STS/IAM/Logs they lean on): LocalStack's Step Functions
rejects the ASL's ItemBatcher and its Lambda needs Docker, so the backfill's executor stays mediacanon.local.sfnlocal's
(an in-process moto), with its data on LocalStack's S3. State is in memory and goes with the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mediacanon.local import embedded

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0  # seconds; it prints "Ready." after about 5 s on this project's CI machine
STOP_TIMEOUT = 20.0
SERVICES = "s3,sqs,events,sts,iam,logs"

# Run by LocalStack's Python (it has `cryptography`): a key and a self-signed certificate in one PEM. Without
# CUSTOM_SSL_CERT_PATH, LocalStack downloads or makes its own certificate, through a pyOpenSSL function that
# pyOpenSSL no longer has, and exits.
_MAKE_CERT = """
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.UTC)
cert = (
    x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
    .not_valid_after(now + datetime.timedelta(days=30))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName("127.0.0.1")]), critical=False)
    .sign(key, hashes.SHA256())
)
with open(sys.argv[1], "wb") as out:
    out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()))
    out.write(cert.public_bytes(serialization.Encoding.PEM))
"""


class LocalStackError(RuntimeError):
    """LocalStack could not be started; the message names its log."""


@dataclass
class LocalStackServer:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM to the server's own process group (started in a session of its own), then SIGKILL."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


def python(repo: Path = REPO) -> Path:
    configured = os.environ.get("MEDIACANON_LOCALSTACK_PYTHON")
    found = Path(configured) if configured else repo / ".venv-localstack" / "bin" / "python"
    if not found.exists():
        raise LocalStackError(
            f"{found} does not exist: `make .venv-localstack/.installed` builds it (`make test-localstack` does), "
            "or set MEDIACANON_LOCALSTACK_PYTHON to a Python with localstack-core"
        )
    return found


def health(endpoint_url: str) -> dict[str, object] | None:
    """LocalStack's /_localstack/health answer; None while nothing answers there."""
    try:
        with urllib.request.urlopen(f"{endpoint_url}/_localstack/health", timeout=2) as response:  # noqa: S310 - our own http://127.0.0.1
            answer: dict[str, object] = json.loads(response.read())
            return answer
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


def _ready(endpoint_url: str) -> bool:
    services = (health(endpoint_url) or {}).get("services")
    if not isinstance(services, dict):
        return False
    return all(services.get(name) in ("available", "running") for name in SERVICES.split(","))


def start(state_dir: Path, port: int | None = None) -> LocalStackServer:
    """Start LocalStack on a free port of 127.0.0.1 with its files under `state_dir`; returns once S3, SQS and
    EventBridge answer."""
    interpreter = python()
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or embedded.free_port()
    endpoint_url = f"http://127.0.0.1:{port}"
    pem = state_dir / "server.pem"
    subprocess.run([str(interpreter), "-c", _MAKE_CERT, str(pem)], check=True, capture_output=True, timeout=60)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALSTACK_", "AWS_ENDPOINT_URL"))}
    env.update(
        GATEWAY_LISTEN=f"127.0.0.1:{port}",
        LOCALSTACK_HOST=f"127.0.0.1:{port}",  # the host of the URLs it hands out (queue URLs)
        SQS_ENDPOINT_STRATEGY="off",  # queue URLs http://127.0.0.1:<port>/<account>/<name>, as moto's
        SERVICES=SERVICES,
        SKIP_SSL_CERT_DOWNLOAD="1",
        CUSTOM_SSL_CERT_PATH=str(pem),
        DISABLE_EVENTS="1",  # its own analytics events, not EventBridge's
        LOCALSTACK_TELEMETRY_DISABLED="1",
        DNS_ADDRESS="0",  # no DNS server of its own (it would want port 53)
        FILESYSTEM_ROOT=str(state_dir / "filesystem"),  # else it writes under its virtualenv
        LOCALSTACK_VOLUME_DIR=str(state_dir / "volume"),
    )
    log = state_dir / f"localstack-{port}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(interpreter), "-m", "localstack.runtime.main"],
            cwd=state_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LocalStackServer(endpoint_url, process, log)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while not _ready(endpoint_url):
            if process.poll() is not None:
                raise LocalStackError(f"LocalStack exited with {process.returncode} (log {log}):\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise LocalStackError(f"LocalStack did not answer on {endpoint_url} in {START_TIMEOUT:.0f}s:\n{_tail(log)}")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
    return server


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]
