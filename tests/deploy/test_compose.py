"""docker-compose.yml, the Dockerfile and deploy/kafka: valid, consistent with each other,
with the settings and topics of the code, and installing what `make` installs."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

from streamer.settings import Settings
from streamer.stream.topics import Topics
from tests.conftest import need_tool
from tests.deploy.promql import DEPLOY, GRAFANA_PROVISIONING, PROMETHEUS_CONFIG, ROOT, load_yaml

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
TOPICS = DEPLOY / "kafka" / "topics.txt"
CREATE_TOPICS = DEPLOY / "kafka" / "create-topics.sh"
WORKERS = ("worker1", "worker2")

#: Extras the Dockerfile installs that pyproject.toml does not declare yet. The lead adds
#: `rocksdb = ["faust-streaming[rocksdict]"]` to [project.optional-dependencies]; then
#: empty this set (the test fails while a declared extra is still listed here).
PENDING_EXTRAS: set[str] = set()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load_yaml(COMPOSE))


def topics_txt() -> dict[str, tuple[int, dict[str, str]]]:
    found = {}
    for line in TOPICS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, partitions, *rest = line.split()
        assert name not in found, f"topics.txt lists {name} twice"
        configs = dict(pair.split("=", 1) for pair in rest[0].split(",")) if rest else {}
        found[name] = (int(partitions), configs)
    return found


def interpolate(value: object) -> str:
    """Compose's ``${VAR:-default}`` as it resolves when VAR is unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def worker_settings(service: dict[str, Any]) -> Settings:
    env = {k: interpolate(v) for k, v in service["environment"].items()}
    unknown = [k for k in env if k.startswith("FW_")
               and k[3:].lower() not in Settings.__dataclass_fields__]
    assert unknown == [], f"FW_ variables no setting reads: {unknown}"
    return Settings.load(env=env)  # raises on a bad value


def test_docker_compose_config_validates() -> None:
    tool = need_tool("docker-compose")
    run = subprocess.run([tool, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    services = subprocess.run([tool, "-f", str(COMPOSE), "config", "--services"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=True).stdout
    assert set(services.split()) == {"kafka", "kafka-init", *WORKERS, "prometheus", "grafana"}


def test_services_have_healthchecks_and_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name != "kafka-init":  # a one-shot job: its exit status is its health
            assert service["healthcheck"]["test"], f"{name} has no healthcheck"
        image = service.get("image", "")
        if "build" not in service:
            assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", image), f"{name}: pin the image, not {image!r}"

    def needs(name: str) -> dict[str, str]:
        return {dep: cond["condition"] for dep, cond in services[name].get("depends_on", {}).items()}

    assert needs("kafka-init") == {"kafka": "service_healthy"}
    for worker in WORKERS:
        assert needs(worker) == {"kafka": "service_healthy",
                                 "kafka-init": "service_completed_successfully"}
    assert needs("grafana") == {"prometheus": "service_healthy"}
    assert services["kafka-init"]["restart"] == "no"


def test_kafka_is_single_node_kraft_from_the_official_image(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(env)
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    # exactly_once needs the transaction log, which a single broker must replicate once.
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"


def test_workers_run_the_image_with_rocksdb_and_exactly_once(compose: dict[str, Any]) -> None:
    for name in WORKERS:
        service = compose["services"][name]
        assert service["build"]["context"] == "." and service["build"]["dockerfile"] == "Dockerfile"
        command = service["command"]
        assert command[:3] == ["worker", "--broker", "kafka:9092"]
        assert command[command.index("--web-host") + 1] == "0.0.0.0"
        settings = worker_settings(service)
        assert settings.store == "rocksdb://" and settings.processing_guarantee == "exactly_once"
        assert service["hostname"] == name
        assert any(v.endswith(":/var/lib/frictionwatch") for v in service["volumes"]), (
            "the RocksDB data directory (the image's working directory) needs a volume")


def test_topics_match_the_code_and_the_workers(compose: dict[str, Any]) -> None:
    topics = topics_txt()
    for name in WORKERS:
        settings = worker_settings(compose["services"][name])
        missing = set(Topics.names(settings)) - set(topics)
        assert missing == set(), f"topics.txt lacks {missing}"
        # Co-partitioning: the table changelog and the events topic have one count,
        # and it is the one the workers are told.
        assert {p for p, _ in topics.values()} == {settings.partitions}
        for name in Topics.compacted(settings):
            assert topics[name][1].get("cleanup.policy") == "compact", name


def test_create_topics_script_creates_each_listed_topic(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n')
    stub.chmod(0o755)
    run = subprocess.run(["bash", str(CREATE_TOPICS)], capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "KAFKA_TOPICS": str(stub),
                              "BOOTSTRAP": "kafka:9092"})
    assert run.returncode == 0, run.stderr
    lines = calls.read_text().splitlines()
    expected = topics_txt()
    assert len(lines) == len(expected)
    for line, (name, (partitions, configs)) in zip(lines, expected.items(), strict=True):
        args = shlex.split(line)
        assert args[:4] == ["--bootstrap-server", "kafka:9092", "--create", "--if-not-exists"]
        assert args[args.index("--topic") + 1] == name
        assert args[args.index("--partitions") + 1] == str(partitions)
        given = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
        assert given == [f"{k}={v}" for k, v in configs.items()]


def test_create_topics_script_refuses_a_bad_line(tmp_path: Path) -> None:
    shutil.copy(CREATE_TOPICS, tmp_path / "create-topics.sh")
    (tmp_path / "topics.txt").write_text("frictionwatch.events eight\n")
    run = subprocess.run(["bash", str(tmp_path / "create-topics.sh")], capture_output=True,
                         text=True, timeout=30, env={"PATH": "/usr/bin:/bin", "KAFKA_TOPICS": "true"})
    assert run.returncode == 2 and "bad line for frictionwatch.events" in run.stderr


def test_mounts_and_scrape_targets_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    # Prometheus scrapes exactly the compose workers, on their web port.
    config = load_yaml(PROMETHEUS_CONFIG)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "frictionwatch")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    expected = {f"{w}:{worker_settings(services[w]).web_port}" for w in WORKERS}
    assert targets == expected
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    # Grafana reads the provisioning, and the dashboards where the provider looks.
    grafana = services["grafana"]["volumes"]
    assert f"./{GRAFANA_PROVISIONING.relative_to(ROOT)}:/etc/grafana/provisioning:ro" in grafana
    provider = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "frictionwatch.yml")["providers"][0]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana


# --- The Dockerfile installs what `make` installs ------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def make_recipe(target: str) -> tuple[str, list[str]]:
    """(prerequisites, recipe lines) of a Makefile target."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"{target}:"):
            recipe = []
            for follow in lines[i + 1:]:
                if not follow.startswith("\t"):
                    break
                recipe.append(follow.strip())
            return line.split(":", 1)[1].strip(), recipe
    raise AssertionError(f"Makefile has no target {target}")


INSTALL_SCRIPT = "deploy/install-system-packages.sh"
RUNTIME_PACKAGES = "deploy/system-packages.txt"
TEST_PACKAGES = "deploy/test-packages.txt"


def install_lists(command: str) -> list[str]:
    """The package lists a shell command hands to the install script ([] if it does not)."""
    words = shlex.split(command)
    if INSTALL_SCRIPT not in words:
        return []
    return words[words.index(INSTALL_SCRIPT) + 1:]


def package_list(path: str) -> list[str]:
    return [line.split()[0] for line in (ROOT / path).read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_dockerfile_installs_what_make_installs() -> None:
    instructions = dockerfile_instructions()
    copied = {src for kind, args in instructions if kind == "COPY" for src in args.split()[:-1]}
    runs = [args for kind, args in instructions if kind == "RUN"]

    # Debian packages: the script `make system-packages` runs, with the runtime list only
    # (make adds the test list), and no other apt.
    _, system = make_recipe("system-packages")
    assert len(system) == 1, system
    make_lists = install_lists(system[0])
    assert make_lists == [RUNTIME_PACKAGES, TEST_PACKAGES], make_lists
    image_lists = [lists for run in runs for command in run.split("&&")
                   if (lists := install_lists(command))]
    assert image_lists == [[RUNTIME_PACKAGES]], image_lists
    assert {INSTALL_SCRIPT, RUNTIME_PACKAGES} <= copied and TEST_PACKAGES not in copied
    assert not any(re.search(r"\bapt(-get)? install\b", run) for run in runs)

    # Python: this pyproject.toml, installed as `.` with extras, nothing named by hand.
    prerequisites, recipe = make_recipe("$(STAMP)")
    assert "pyproject.toml" in prerequisites and any("-e '.[dev]'" in r for r in recipe)
    assert "pyproject.toml" in copied
    extras: set[str] = set()
    for run in runs:
        for command in run.split("&&"):
            words = shlex.split(command)
            if "pip" not in words or "install" not in words:
                continue
            targets = [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
            for target in targets:
                assert target == "pip" or re.fullmatch(r"\.(\[[\w,-]+\])?", target), (
                    f"the Dockerfile pip-installs {target!r}: dependencies belong in pyproject.toml")
                if target.startswith(".["):
                    extras.update(target[2:-1].split(","))
    assert extras, "the Dockerfile installs no extra: where does the RocksDB store come from?"

    with open(ROOT / "pyproject.toml", "rb") as fh:
        declared = set(tomllib.load(fh)["project"].get("optional-dependencies", {}))
    assert extras - declared - PENDING_EXTRAS == set(), "extras pyproject.toml does not declare"
    assert PENDING_EXTRAS & declared == set(), "declared now: remove them from PENDING_EXTRAS"


def test_dockerignore_keeps_what_the_image_copies() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    for kind, args in dockerfile_instructions():
        if kind != "COPY":
            continue
        for source in args.split()[:-1]:
            path = Path(source.rstrip("/"))
            assert (ROOT / path).exists(), f"COPY {source}: no such file"
            for part in [path, *path.parents][:-1]:
                hit = [p for p in patterns if fnmatch.fnmatch(str(part), p)]
                assert hit == [], f".dockerignore {hit} drops {source}, which the image copies"


def test_the_image_gets_runtime_packages_and_the_tests_get_the_rest() -> None:
    runtime, test = package_list(RUNTIME_PACKAGES), package_list(TEST_PACKAGES)
    assert set(runtime) & set(test) == set(), "a package is in both lists"
    # What the tests use (promtool, Chromium, docker-compose config, kcat) never ships.
    assert {"prometheus", "chromium", "chromium-driver", "docker-compose", "kcat"} <= set(test)
    assert len(runtime) == len(set(runtime)) and len(test) == len(set(test))


def _run_install(tmp_path: Path, *lists: str, installed: tuple[str, ...] = ()) -> tuple[
        subprocess.CompletedProcess[str], list[str]]:
    """The install script with dpkg, id and apt-get stubbed: what would it install?"""
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    calls = work / "calls"
    stubs = {
        "dpkg": "case \" $* \" in " + " ".join(f'*" {p} "*) exit 0;;' for p in installed)
                + " esac; exit 1",
        "id": "echo 0",
        "apt-get": f'echo "$*" >> {calls}',
    }
    for name, body in stubs.items():
        (work / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (work / name).chmod(0o755)
    run = subprocess.run(["bash", str(ROOT / INSTALL_SCRIPT), *lists], capture_output=True,
                         text=True, timeout=30, cwd=ROOT, env={"PATH": f"{work}:/usr/bin:/bin"})
    return run, calls.read_text().splitlines() if calls.exists() else []


def test_install_script_installs_what_the_given_lists_miss(tmp_path: Path) -> None:
    runtime, test = package_list(RUNTIME_PACKAGES), package_list(TEST_PACKAGES)
    run, calls = _run_install(tmp_path, RUNTIME_PACKAGES, TEST_PACKAGES,
                              installed=(runtime[0], "prometheus"))
    assert run.returncode == 0, run.stderr
    wanted = [p for p in runtime + test if p not in (runtime[0], "prometheus")]
    assert calls[0] == "update -qq" and shlex.split(calls[1])[-len(wanted):] == wanted, calls

    run, calls = _run_install(tmp_path, RUNTIME_PACKAGES)  # the image's command
    assert run.returncode == 0, run.stderr
    assert shlex.split(calls[1])[-len(runtime):] == runtime, calls

    run, calls = _run_install(tmp_path, RUNTIME_PACKAGES, TEST_PACKAGES,
                              installed=tuple(runtime + test))
    assert run.returncode == 0 and calls == [], "nothing missing: no apt-get at all"


def test_install_script_refuses_no_list_or_a_missing_one(tmp_path: Path) -> None:
    run, _ = _run_install(tmp_path)
    assert run.returncode == 2 and "usage" in run.stderr
    run, _ = _run_install(tmp_path, "deploy/no-such-list.txt")
    assert run.returncode == 2 and "no such package list" in run.stderr
