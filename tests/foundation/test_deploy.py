"""The deployment shape: production settings pass Django's deploy checks, compose has every service."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_it_passes_check_deploy_with_production_settings() -> None:
    # The deployment's environment, not the test session's (the browser tests allow async ORM calls).
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_SETTINGS_MODULE": "webapp.settings_production",
        "SECRET_KEY": "a-long-random-production-secret-" + "x7Kp2" * 8,
        "ALLOWED_HOSTS": "attribution.example.org",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_refuses_to_start_production_without_a_secret() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRET_KEY")}
    env["DJANGO_SETTINGS_MODULE"] = "webapp.settings_production"
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_it_describes_the_whole_stack_in_docker_compose() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker-gpu", "worker-cpu", "redis", "postgres"} <= set(services)
    assert "gunicorn" in services["web"]["command"]
    assert "-Q attribution" in services["worker-gpu"]["command"]
    assert "-Q training" in services["worker-cpu"]["command"]
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    redis_command = services["redis"]["command"]
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    assert {"media", "model-cache"} <= set(compose["volumes"])
    for name in ("web", "worker-gpu", "worker-cpu", "redis", "postgres"):
        assert "healthcheck" in services[name], name
    for name in ("web", "worker-gpu", "worker-cpu"):
        mounts = {volume.split(":")[0] for volume in services[name]["volumes"]}
        assert {"media", "model-cache"} <= mounts, name
    assert (REPO / ".env.example").exists()
