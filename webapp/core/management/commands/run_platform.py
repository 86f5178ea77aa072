"""`make run`: the web server and a Celery worker (with the periodic sweep), stopped together on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the web server and a Celery worker on this machine until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args: object, **options: object) -> None:
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        commands = {
            "web": [
                sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", str(options["bind"]),
                "--workers", str(options["web_workers"]), "--access-logfile", "-",
            ],
            "worker": [
                sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "attribution,training",
                "--concurrency", "1", "--loglevel", "INFO", "--beat",
                "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"),
            ],
        }
        processes = {name: subprocess.Popen(command) for name, command in commands.items()}
        self.stdout.write(self.style.SUCCESS(f"Serving on http://{options['bind']}/ (Ctrl-C stops everything)"))

        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with {process.returncode}; stopping the rest")
                        stopping = True
                time.sleep(0.5)
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
