"""A local Kubernetes control plane (`riskray cluster up|status|down`): the manifests under cluster/ applied to a real
API server and reconciled by the real KubeRay and Prometheus operators, on loopback, without Docker.

etcd (Debian's), kube-apiserver, kube-controller-manager and kube-scheduler (built from the Go module proxy at the
version of cluster/local/k8s/versions.sh), kwok (nodes and pods simulated: scheduled and marked running, no
container runs), the KubeRay operator and the Prometheus operator run out of cluster under the stack's supervisor.
Authentication is by tokens and service-account tokens, authorization by RBAC: the controller-manager and the
scheduler act as the identities Kubernetes' default RBAC binds (``system:kube-controller-manager``,
``system:kube-scheduler``), the operators and the admin kubeconfig as ``system:masters`` (the Prometheus operator
by a client certificate: it takes no token out of cluster). Everything lives in ``settings.kube_home`` (PKI,
tokens, etcd's data, kubeconfigs) and goes with ``riskray cluster down --purge``.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import secrets
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from app.config import PROJECT_ROOT, Settings
from app.operations.errors import StackError
from app.operations.supervisor import Program

GROUP = "kubernetes"
VERSIONS_FILE = PROJECT_ROOT / "cluster" / "local" / "k8s" / "versions.sh"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: in the serving certificate, as in-cluster clients dial it
ISSUER = "https://kubernetes.default.svc.cluster.local"
# kwok nodes sized like the production nodes of docs/operations.md (capacity table: 3 nodes of 8 CPU / 32 GiB carry
# 1,000 predictions/s and events/s)
NODES = tuple((f"riskray-node-{i}", "8", "32Gi") for i in (1, 2, 3))
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


@functools.cache  # one bash per process: every rendering of the supervisor config asks for each component's path
def versions() -> dict[str, str]:
    """The pinned versions and the cache folder's name (cluster/local/k8s/versions.sh, read through bash as the
    build script and the bootstrap read it, so no second parser can read it otherwise)."""
    said = subprocess.run(["bash", str(VERSIONS_FILE), "--print"], capture_output=True, text=True, check=True,
                          timeout=30).stdout
    return dict(line.split("=", 1) for line in said.splitlines() if "=" in line)


def tools_dir(settings: Settings) -> Path:
    """Where cluster/local/k8s/build.sh put the binaries and the operators' CRDs (one folder per version set)."""
    return settings.tools_cache / versions()["TOOLS_KEY"]


def binary(settings: Settings, name: str) -> Path:
    return tools_dir(settings) / "bin" / name


def crds_dir(settings: Settings) -> Path:
    """The CRDs of the operators that run here, from their own modules (kuberay/, prometheus-operator/), and the
    Gateway API's at the version KubeRay is built with (gateway-api/)."""
    return tools_dir(settings) / "crds"


def home(settings: Settings) -> Path:
    """Absolute (the settings make it so): kubeconfigs name their CA file, which kubectl resolves from the
    kubeconfig's own folder."""
    return settings.kube_home


def kubeconfig_path(settings: Settings, user: str = "admin") -> Path:
    return home(settings) / f"{user}.kubeconfig"


def etcd_url(settings: Settings) -> str:
    return f"https://{settings.kube_host}:{settings.kube_etcd_port}"


def api_url(settings: Settings) -> str:
    return f"https://{settings.kube_host}:{settings.kube_apiserver_port}"


# --- PKI and credentials -------------------------------------------------------------------------------------
def _write_private(path: Path, data: bytes) -> None:
    """Owner-only, and atomic (a component starting beside this never reads a half-written file); untouched when
    unchanged."""
    if path.exists() and path.read_bytes() == data and path.stat().st_mode & 0o077 == 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    partial.replace(path)


# every file the PKI makes; all of them or it is made again (a first start interrupted half-way leaves no gap)
PKI_FILES = ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "sa.key", "sa.pub", "etcd.crt", "etcd.key",
             "etcd-client.crt", "etcd-client.key", "prometheus-operator.crt", "prometheus-operator.key")


def _pki(settings: Settings) -> None:
    """A CA; serving certificates for the API server (loopback and the in-cluster names) and etcd; client
    certificates for the API server at etcd (etcd admits no one else: whoever reaches etcd owns the cluster) and
    for the Prometheus operator; the service-account signing key. Made once, kept across restarts (tokens already
    issued stay valid)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    pki = home(settings) / "pki"
    if all((pki / name).exists() for name in PKI_FILES):
        return

    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem(private: rsa.RSAPrivateKey) -> bytes:
        return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())

    now = dt.datetime.now(dt.UTC)
    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "riskray-local-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    loopback = [x509.IPAddress(ipaddress.ip_address(settings.kube_host)), x509.DNSName("localhost")]

    def issue(name: str, common: str, organization: str | None = None,
              names: list[x509.GeneralName] | None = None) -> None:
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
        if organization:
            subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        private = key()
        builder = (x509.CertificateBuilder().subject_name(x509.Name(subject)).issuer_name(ca_name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650)))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        _write_private(pki / f"{name}.key", pem(private))
        certificate = builder.sign(ca_key, hashes.SHA256())
        (pki / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    _write_private(pki / "ca.key", pem(ca_key))
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cluster_names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                     "kubernetes.default.svc.cluster.local"]
    issue("apiserver", "kube-apiserver", names=[*loopback, *map(x509.DNSName, cluster_names),
                                                x509.IPAddress(ipaddress.ip_address(SERVICE_IP))])
    issue("etcd", "etcd", names=loopback)
    issue("etcd-client", "kube-apiserver-etcd-client")
    # the Prometheus operator takes no token out of cluster, only a client certificate (-cert-file/-key-file)
    issue("prometheus-operator", "prometheus-operator", "system:masters")
    sa_key = key()
    _write_private(pki / "sa.key", pem(sa_key))
    (pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


# user -> (groups): the identities of the static token file
USERS = {
    "admin": ["system:masters"],
    "system:kube-controller-manager": [],
    "system:kube-scheduler": [],
    "kwok": ["system:masters"],
    "kuberay-operator": ["system:masters"],
}


def _file_name(user: str) -> str:
    return user.replace("system:", "")


def _credentials(settings: Settings) -> None:
    """A token per identity (the API server's token file, mode 0600) and a kubeconfig per identity."""
    tokens_file = home(settings) / "pki" / "tokens.csv"
    lines = tokens_file.read_text().splitlines() if tokens_file.exists() else []
    known = {line.split(",")[1] for line in lines if line}
    lines += [f'{secrets.token_urlsafe(32)},{user},{user},"{",".join(groups)}"' for user, groups in USERS.items()
              if user not in known]  # a user added since the file was made gets a token too
    _write_private(tokens_file, ("\n".join(line for line in lines if line) + "\n").encode())
    tokens = {line.split(",")[1]: line.split(",")[0] for line in tokens_file.read_text().splitlines() if line}
    for user in USERS:
        name = _file_name(user)
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "riskray-local",
            "clusters": [{"name": "riskray-local", "cluster": {
                "server": api_url(settings), "certificate-authority": str(home(settings) / "pki" / "ca.crt")}}],
            "users": [{"name": name, "user": {"token": tokens[user]}}],
            "contexts": [{"name": "riskray-local", "context": {"cluster": "riskray-local", "user": name}}],
        }
        _write_private(kubeconfig_path(settings, name), yaml.safe_dump(config).encode())


def admin_token(settings: Settings) -> str:
    config = yaml.safe_load(kubeconfig_path(settings).read_text())
    return str(config["users"][0]["user"]["token"])


def ca_file(settings: Settings) -> Path:
    return home(settings) / "pki" / "ca.crt"


def ssl_context(settings: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file(settings)))


def client(settings: Settings, token: str | None = None) -> httpx.Client:
    """An HTTP client for the API server (the admin's token unless another is given), TLS checked against the CA."""
    return httpx.Client(base_url=api_url(settings), verify=ssl_context(settings), timeout=10,
                        headers={"Authorization": f"Bearer {token or admin_token(settings)}"})


def kubectl(settings: Settings, *args: str, input_text: str | None = None, timeout: float = 120,
            kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig or kubeconfig_path(settings)), *args],
                          input=input_text, capture_output=True, text=True, timeout=timeout)


# --- components ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Component:
    """The service interface of ``app.operations.manager`` for one control-plane process."""

    name: str  # the supervisor program
    binary: str
    stage: int  # started after every component of a lower stage is healthy
    group: str = GROUP

    def port(self, settings: Settings) -> int:
        return {
            "kube-etcd": settings.kube_etcd_port, "kube-apiserver": settings.kube_apiserver_port,
            "kube-controller-manager": settings.kube_controller_manager_port,
            "kube-scheduler": settings.kube_scheduler_port, "kwok": settings.kwok_port,
            "kuberay-operator": settings.kuberay_health_port,
            "prometheus-operator": settings.prometheus_operator_port,
        }[self.name]

    def ports(self, settings: Settings) -> list[int]:
        extra = {"kube-etcd": [settings.kube_etcd_peer_port], "kuberay-operator": [settings.kuberay_metrics_port]}
        return [self.port(settings), *extra.get(self.name, [])]

    def prepare(self, settings: Settings) -> None:
        path = binary(settings, self.binary)
        if not path.exists():
            raise StackError(f"{path} is missing: run the bootstrap (make bootstrap), which builds the control plane "
                             "from the Go module proxy (cluster/local/k8s/build.sh)")
        _pki(settings)
        _credentials(settings)  # idempotent, atomic: components starting beside it read whole files

    def program(self, settings: Settings) -> Program:
        return Program(name=self.name, command=[str(binary(settings, self.binary)), *_arguments(self.name, settings)],
                       stopwaitsecs=20)

    def check(self, settings: Settings) -> None:
        host, port = settings.kube_host, self.port(settings)
        if self.name == "kube-etcd":
            pki = home(settings) / "pki"
            trust = ssl_context(settings)
            trust.load_cert_chain(pki / "etcd-client.crt", pki / "etcd-client.key")
            response = httpx.get(f"{etcd_url(settings)}/health", verify=trust, timeout=3)
            if response.json().get("health") != "true":
                raise StackError(f"etcd reports {response.text}")
        elif self.name == "kube-apiserver":
            with client(settings) as api:
                api.get("/readyz").raise_for_status()
        elif self.name in {"kube-controller-manager", "kube-scheduler"}:
            # their serving certificates are self-signed in their --cert-dir: health only, no secret crosses
            httpx.get(f"https://{host}:{port}/healthz", verify=False, timeout=3).raise_for_status()
        elif self.name == "kuberay-operator":
            httpx.get(f"http://{host}:{port}/readyz", timeout=3).raise_for_status()
        else:
            httpx.get(f"http://{host}:{port}/healthz", timeout=3).raise_for_status()

    def provision(self, settings: Settings) -> None:
        if self.name == "kube-apiserver":
            install_crds(settings, crds_dir(settings))
            ensure_nodes(settings)


def _arguments(name: str, settings: Settings) -> list[str]:
    h, pki, state = settings.kube_host, home(settings) / "pki", home(settings)

    def kubeconfig(user: str) -> str:
        return f"--kubeconfig={kubeconfig_path(settings, _file_name(user))}"

    if name == "kube-etcd":
        # TLS with client certificates: only the API server (its etcd-client certificate) reads or writes etcd
        client_url, peer_url = etcd_url(settings), f"http://{h}:{settings.kube_etcd_peer_port}"
        return ["--name=riskray", f"--data-dir={state / 'etcd'}", f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}", f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}", f"--initial-cluster=riskray={peer_url}",
                f"--cert-file={pki / 'etcd.crt'}", f"--key-file={pki / 'etcd.key'}", "--client-cert-auth",
                f"--trusted-ca-file={pki / 'ca.crt'}"]
    if name == "kube-apiserver":
        return [f"--etcd-servers={etcd_url(settings)}", f"--etcd-cafile={pki / 'ca.crt'}",
                f"--etcd-certfile={pki / 'etcd-client.crt'}", f"--etcd-keyfile={pki / 'etcd-client.key'}",
                f"--bind-address={h}",
                f"--advertise-address={h}", f"--secure-port={settings.kube_apiserver_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={pki / 'tokens.csv'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}", f"--service-account-issuer={ISSUER}",
                "--authorization-mode=Node,RBAC", f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--anonymous-auth=false", "--allow-privileged=true", "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                # Debian's etcd 3.4.23 has no watch progress requests, which streaming lists need: with WatchList on,
                # every watch from resourceVersion 0 (kwok's) is defaulted to one and ends in an error, and kwok,
                # retrying with a growing back-off, went blind to new pods for up to ~40 s. Off, clients list and
                # watch as before it (client-go falls back by itself).
                "--feature-gates=WatchList=false"]
    if name == "kube-controller-manager":
        return [kubeconfig("system:kube-controller-manager"), f"--bind-address={h}",
                f"--secure-port={settings.kube_controller_manager_port}", f"--cert-dir={state / 'controller-manager'}",
                "--leader-elect=false", f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}", "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--feature-gates=WatchListClient=false"]  # it asks for streaming lists, which the API server refuses
    if name == "kube-scheduler":
        return [kubeconfig("system:kube-scheduler"), f"--bind-address={h}",
                f"--secure-port={settings.kube_scheduler_port}", f"--cert-dir={state / 'scheduler'}",
                "--leader-elect=false"]
    if name == "kwok":
        return [kubeconfig("kwok"), f"--config={tools_dir(settings) / 'kwok-stages.yaml'}", "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                f"--server-address={h}:{settings.kwok_port}", "--cidr=10.244.0.0/16", "--node-ip=10.244.0.1"]
    if name == "kuberay-operator":
        return [kubeconfig("kuberay-operator"), "--enable-leader-election=false",
                f"--metrics-addr={h}:{settings.kuberay_metrics_port}",
                f"--health-probe-bind-address={h}:{settings.kuberay_health_port}",
                "--feature-gates=RayJobDeletionPolicy=true,RayServiceIncrementalUpgrade=true",
                # several resources at once: a reconcile waiting on a dashboard no kwok pod runs holds up no other
                "--reconcile-concurrency=4"]
    if name == "prometheus-operator":
        return [f"-apiserver={api_url(settings)}", f"-ca-file={pki / 'ca.crt'}",
                f"-cert-file={pki / 'prometheus-operator.crt'}", f"-key-file={pki / 'prometheus-operator.key'}",
                f"-web.listen-address={h}:{settings.prometheus_operator_port}"]
    raise ValueError(name)


ETCD = Component("kube-etcd", "etcd", 0)
API_SERVER = Component("kube-apiserver", "kube-apiserver", 1)
COMPONENTS = (
    ETCD, API_SERVER,
    Component("kube-controller-manager", "kube-controller-manager", 2),
    Component("kube-scheduler", "kube-scheduler", 2),
    Component("kwok", "kwok", 2),
    Component("kuberay-operator", "ray-operator", 2),
    Component("prometheus-operator", "operator", 2),
)


# --- what the API server holds before the operators start ----------------------------------------------------
def install_crds(settings: Settings, directory: Path) -> None:
    """Every CRD under ``directory``, applied server-side, and established."""
    files = sorted(directory.rglob("*.yaml"))
    if not files:
        raise StackError(f"no CRDs under {directory}: run the bootstrap (make bootstrap)")
    for path in files:
        result = kubectl(settings, "apply", "--server-side", "--force-conflicts", "-f", str(path))
        if result.returncode != 0:
            raise StackError(f"installing {path.name}: {result.stderr.strip()[-800:]}")
    result = kubectl(settings, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    if result.returncode != 0:
        raise StackError(f"CRDs not established: {result.stderr.strip()[-800:]}")


def ensure_nodes(settings: Settings) -> None:
    """The kwok nodes (idempotent): kwok keeps them Ready and runs the pods scheduled on them, as a kubelet would
    report them (no container runs)."""
    documents = []
    for name, cpu, memory in NODES:
        documents.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok"}},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                       "capacity": {"cpu": cpu, "memory": memory, "pods": "110"}},
        })
    result = kubectl(settings, "apply", "--server-side", "--force-conflicts", "-f", "-",
                     input_text=yaml.safe_dump_all(documents))
    if result.returncode != 0:
        raise StackError(f"creating the kwok nodes: {result.stderr.strip()[-800:]}")
