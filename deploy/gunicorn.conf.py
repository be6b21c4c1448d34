"""gunicorn configuration for one MedVault app server.

Used by deploy/systemd/medvault-app@.service and by scripts/cluster.sh:
``gunicorn -c deploy/gunicorn.conf.py medvault.web.wsgi``. Every value can be overridden with
``MEDVAULT_GUNICORN_*`` environment variables (or gunicorn's own command-line flags).
"""

import multiprocessing
import os

# One app server listens on one address; nginx balances several of them.
bind = os.environ.get("MEDVAULT_GUNICORN_BIND", "127.0.0.1:8001")

# Ingest (decode + lossless re-encode + verify) and analysis are CPU-bound: about one sync
# worker per core, plus one so that a worker blocked on I/O does not leave a core idle.
workers = int(os.environ.get("MEDVAULT_GUNICORN_WORKERS", multiprocessing.cpu_count() + 1))
worker_class = "sync"
# nginx buffers request bodies and responses, so sync workers never wait on slow clients.
threads = int(os.environ.get("MEDVAULT_GUNICORN_THREADS", "1"))

# A 2 GiB upload or a large analysis may take minutes; anything longer is a hung worker.
timeout = int(os.environ.get("MEDVAULT_GUNICORN_TIMEOUT", "300"))
graceful_timeout = 30
keepalive = 5

# Recycle workers now and then so that a slow leak in a decoder library cannot grow forever.
max_requests = int(os.environ.get("MEDVAULT_GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = 200

# Heartbeat files in RAM: a worker on a busy disk is not mistaken for a hung one.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Trust X-Forwarded-* only from the load balancer's address(es).
forwarded_allow_ips = os.environ.get("MEDVAULT_GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")

accesslog = os.environ.get("MEDVAULT_GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("MEDVAULT_GUNICORN_LOG_LEVEL", "info")
proc_name = "medvault-app"

# gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which two
# app servers on one machine would share; it is off unless a path is given.
_control = os.environ.get("MEDVAULT_GUNICORN_CONTROL_SOCKET", "")
if _control:
    control_socket = _control
else:
    control_socket_disable = True
