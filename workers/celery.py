"""The Celery app: `celery -A workers worker -Q attribution,training` starts a worker."""

import os

# Before anything imports torch: OpenMP threads that sleep instead of spinning between forward
# passes. With spinning, a worker sharing its cores with the web server and Pillow ran up to
# eight times slower at batch size 1 (bench/end_to_end.py: 1.07 against 6.16 verdicts/s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from celery import Celery  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("workers")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


@app.on_after_configure.connect
def _make_filesystem_broker_folders(sender: Celery, **kwargs: object) -> None:
    # kombu's filesystem transport (the no-server default) needs its folders to exist.
    if sender.conf.broker_url.startswith("filesystem"):
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            folder = sender.conf.broker_transport_options.get(key)
            if folder:
                os.makedirs(folder, exist_ok=True)
