"""A second real Kafka broker (same jars as deploy/kafka/kafka.sh) with a TLS listener that
requires a client certificate and a SASL_SSL listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).

Certificates are made at test time with openssl: a CA, the broker's certificate (SAN
127.0.0.1 + localhost), a client certificate with an encrypted key, and a second, untrusted
CA. SCRAM users are created by the broker's own storage tool (`format --add-scram`).
Ports: ADMUSE_TEST_TLS_PORT (SSL), +1 (SASL_SSL), +2 (controller); default 19395.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.common.settings import KafkaSettings
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
USERS = {  # user -> (mechanism, password)
    "plain-user": ("PLAIN", "plain-secret"),
    "scram256-user": ("SCRAM-SHA-256", "scram256-secret"),
    "scram512-user": ("SCRAM-SHA-512", "scram512-secret"),
}
CLIENT_KEY_PASSWORD = "client-key-secret"


def kafka_uuid() -> str:
    """A Kafka Uuid as `kafka-storage random-uuid` prints it (one JVM start saved). Like
    Kafka's own, never one whose text starts with '-': the tool's argument parser would read
    `-t -xyz…` as a missing value (1 in 64 random ids; it failed a CI run)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _sh(*args: str, cwd: Path) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def make_certs(d: Path) -> None:
    """ca.pem/ca.key, broker.pem + broker-keystore.pem, client.pem/client.key (encrypted),
    rogue-ca.pem (a CA nobody trusts)."""
    d.mkdir(parents=True, exist_ok=True)
    san = d / "san.ext"
    san.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for ca in ("ca", "rogue-ca"):
        _sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout",
            f"{ca}.key", "-out", f"{ca}.pem", "-subj", f"/CN=admuse-test-{ca}", cwd=d)  # fmt: skip
    _sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key",
        "-out", "broker.csr", "-subj", "/CN=localhost", cwd=d)  # fmt: skip
    _sh("openssl", "genpkey", "-algorithm", "RSA", "-aes-256-cbc", "-pass",
        f"pass:{CLIENT_KEY_PASSWORD}", "-out", "client.key", cwd=d)  # fmt: skip
    _sh("openssl", "req", "-new", "-key", "client.key", "-passin", f"pass:{CLIENT_KEY_PASSWORD}",
        "-out", "client.csr", "-subj", "/CN=admuse-client", cwd=d)  # fmt: skip
    for name, ext in (("broker", ["-extfile", str(san)]), ("client", [])):
        _sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext, cwd=d)  # fmt: skip
    (d / "broker-keystore.pem").write_text(
        (d / "broker.key").read_text() + (d / "broker.pem").read_text()
    )


@dataclass
class TLSBroker:
    data: Path
    ssl_port: int
    sasl_port: int
    controller_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def certs(self) -> Path:
        return self.data / "certs"

    def settings(self, protocol: str, user: str | None = None, **over: object) -> KafkaSettings:
        """Client settings for one listener: SSL (client certificate) or SASL_SSL as `user`."""
        kw: dict[str, object] = {
            "security_protocol": protocol,
            "ssl_cafile": str(self.certs / "ca.pem"),
        }
        if protocol == "SSL":
            kw |= {
                "bootstrap_servers": f"127.0.0.1:{self.ssl_port}",
                "ssl_certfile": str(self.certs / "client.pem"),
                "ssl_keyfile": str(self.certs / "client.key"),
                "ssl_key_password": CLIENT_KEY_PASSWORD,
            }
        else:
            assert user is not None
            mechanism, password = USERS[user]
            kw |= {
                "bootstrap_servers": f"127.0.0.1:{self.sasl_port}",
                "sasl_mechanism": mechanism,
                "sasl_username": user,
                "sasl_password": password,
            }
        return KafkaSettings(**(kw | over))  # type: ignore[arg-type]

    def env(self, settings: KafkaSettings) -> dict[str, str]:
        """The ADMUSE_KAFKA_* variables that give a service `settings`."""
        out = {}
        for name in settings.model_fields_set:
            value = getattr(settings, name)
            secret = getattr(value, "get_secret_value", None)
            out[f"ADMUSE_KAFKA_{name.upper()}"] = str(secret() if secret else value)
        return out

    def start(self, timeout_s: float = 90) -> None:
        cache = _jar_cache()
        shutil.rmtree(self.data, ignore_errors=True)
        make_certs(self.certs)
        conf = self.data / "server.properties"
        conf.write_text(self._config())
        classpath = f"{cache}/*"
        scram = [
            a
            for user, (mech, pw) in USERS.items()
            if mech.startswith("SCRAM")
            for a in ("--add-scram", f"{mech}=[name={user},password={pw}]")
        ]
        cluster = kafka_uuid()
        _sh("java", "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone",
            "-t", cluster, "-c", str(conf), *scram, cwd=self.data)  # fmt: skip
        log4j = self.data / "log4j2.yaml"
        log4j.write_text(
            "Configuration:\n  Appenders:\n    Console: {name: STDOUT, PatternLayout: "
            '{pattern: "[%d] %p %m (%c)%n"}}\n  Loggers:\n    Root: {level: INFO, '
            "AppenderRef: [{ref: STDOUT}]}\n"
        )
        self._log = (self.data / "broker.log").open("wb")
        self.proc = subprocess.Popen(
            ["java", "-Xms256m", "-Xmx384m", f"-Dlog4j2.configurationFile={log4j}",
             f"-Dkafka.logs.dir={self.data}", "-cp", classpath, "kafka.Kafka", str(conf)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"TLS broker exited:\n{self.log_tail()}")
            return self._listening()

        try:
            wait_until(up, timeout_s, "the TLS broker to listen")
        except AssertionError as exc:
            raise RuntimeError(f"{exc}:\n{self.log_tail()}") from None

    def _listening(self) -> bool:
        log = self.log_tail(100_000)
        return "Kafka Server started" in log or ("KafkaRaftServer" in log and " started" in log)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self.data / "broker.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def _config(self) -> str:
        c = self.certs
        jaas_plain = "org.apache.kafka.common.security.plain.PlainLoginModule required " + " ".join(
            f'user_{u}="{pw}"' for u, (m, pw) in USERS.items() if m == "PLAIN"
        )
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return f"""process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}
listeners=SSL://127.0.0.1:{self.ssl_port},SASL_SSL://127.0.0.1:{self.sasl_port},CONTROLLER://127.0.0.1:{self.controller_port}
advertised.listeners=SSL://127.0.0.1:{self.ssl_port},SASL_SSL://127.0.0.1:{self.sasl_port},CONTROLLER://127.0.0.1:{self.controller_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
inter.broker.listener.name=SSL
ssl.keystore.type=PEM
ssl.keystore.location={c / "broker-keystore.pem"}
ssl.truststore.type=PEM
ssl.truststore.location={c / "ca.pem"}
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config={jaas_plain};
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}
log.dirs={self.data / "logs"}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=2
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=2
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""


def _jar_cache() -> Path:
    """The jars deploy/kafka/kafka.sh resolved (fetching them first if needed)."""
    subprocess.run([ROOT / "deploy/kafka/kafka.sh", "fetch"], check=True, capture_output=True)
    pom = (ROOT / "deploy/kafka/pom.xml").read_text()
    version = re.search(r"<kafka.version>(.*)</kafka.version>", pom)
    assert version, "deploy/kafka/pom.xml names no kafka.version"
    default = Path.home() / f".cache/admuse/kafka-{version[1]}"
    return Path(os.environ.get("ADMUSE_KAFKA_CACHE_DIR", default))


def tls_broker(data: Path) -> TLSBroker:
    port = int(os.environ.get("ADMUSE_TEST_TLS_PORT", "19395"))
    for p in (port, port + 1, port + 2):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0:
                raise RuntimeError(f"port {p} is in use; set ADMUSE_TEST_TLS_PORT")
    return TLSBroker(data, port, port + 1, port + 2)
