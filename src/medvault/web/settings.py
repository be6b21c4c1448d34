"""MedVault settings: one file, read from environment variables.

Every variable is documented in README.md ("Configuration").
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from medvault.web.env import envbool, envint, envlist, envstr

# Lets the classes that django-stubs types as generics (ModelAdmin[M], ModelForm[M]) be
# subscripted at run time too, so the types mypy checks are the ones the code states.
django_stubs_ext.monkeypatch()

# The checkout root (src/medvault/web/settings.py -> three levels up from src/).
BASE_DIR = Path(__file__).resolve().parents[3]

DATA_DIR = Path(envstr("MEDVAULT_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DEBUG = envbool("MEDVAULT_DEBUG", False)

# Secret key: from MEDVAULT_SECRET_KEY(_FILE); otherwise generated once and kept in the
# data directory, so that a laptop install needs no set-up and never runs on a known key.
_PLACEHOLDER_KEYS = {"", "change-me", "changeme", "secret", "insecure", "placeholder"}
SECRET_KEY = envstr("MEDVAULT_SECRET_KEY", "")
if not SECRET_KEY:
    _key_file = DATA_DIR / "secret_key"
    if _key_file.exists():
        SECRET_KEY = _key_file.read_text().strip()
    else:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = secrets.token_urlsafe(50)
        _key_file.write_text(SECRET_KEY)
        _key_file.chmod(0o600)
if not DEBUG and (SECRET_KEY.lower() in _PLACEHOLDER_KEYS or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "MEDVAULT_SECRET_KEY is a placeholder; set a long random value (or unset it to "
        "have one generated in MEDVAULT_DATA_DIR)."
    )

ALLOWED_HOSTS = envlist("MEDVAULT_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("MEDVAULT_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "medvault.accounts",
    "medvault.archive",
    "medvault.analysis",
    "medvault.retrieval",
    "medvault.dicomweb",
    "medvault.dimse",
    "medvault.ops",
    "medvault.ui",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "medvault.ops.middleware.ServiceUnavailableMiddleware",
    "medvault.ops.middleware.ContentSecurityPolicyMiddleware",
    "medvault.ops.middleware.UploadSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise: static files keep their cache lifetimes, everything else is no-store.
    "medvault.ops.middleware.PrivateNoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Researchers see and send pseudonymous UIDs (PS3.15 Annex E); after authentication.
    "medvault.web.uid_middleware.ResearcherUidMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "medvault.web.urls"
WSGI_APPLICATION = "medvault.web.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite in the data directory unless DATABASE_URL names another engine.
DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{DATA_DIR / 'medvault.sqlite3'}")
# Persistent connections: opening one per request cost ~10 % of a STOW-RS request on SQLite
# (connect, PRAGMAs, and a WAL checkpoint when the last connection closes); the health
# check at the start of each request replaces a connection that broke (say, a database
# restart) instead of failing the request.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=envint("MEDVAULT_DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
_engine = DATABASES["default"]["ENGINE"]
if _engine == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue on
        # busy_timeout instead of failing with "database is locked" on upgrade.
        "transaction_mode": "IMMEDIATE",
        "timeout": 60,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=60000;",
    }
elif _engine == "django.db.backends.mysql":
    DATABASES["default"]["OPTIONS"] = {"charset": "utf8mb4", "isolation_level": "read committed"}
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_bin"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
# Only approved, active accounts can log in (see medvault.accounts.backends).
AUTHENTICATION_BACKENDS = ["medvault.accounts.backends.ApprovedUserBackend"]
# Lockout: this many failed logins per account or per address lock it for this long.
MEDVAULT_LOGIN_MAX_FAILURES = envint("MEDVAULT_LOGIN_MAX_FAILURES", 5)
MEDVAULT_LOGIN_LOCKOUT_SECONDS = envint("MEDVAULT_LOGIN_LOCKOUT_SECONDS", 15 * 60)
# Reverse proxies whose X-Forwarded-For is believed (client address for audit and lockout).
# None by default: when gunicorn serves directly (``make run``) any local program could
# otherwise pick its own address with the header and walk past the per-address lockout.
# Behind nginx set it to the balancers' addresses (scripts/cluster.sh, deploy/systemd).
MEDVAULT_TRUSTED_PROXIES = envlist("MEDVAULT_TRUSTED_PROXIES", [])
# Researchers' de-identification (PS3.15 Annex E, medvault.accounts.deid): keep dates and
# times (the Retain Longitudinal Temporal Information With Full Dates Option) or drop them.
MEDVAULT_DEID_RETAIN_DATES = envbool("MEDVAULT_DEID_RETAIN_DATES", False)
# Key of researchers' pseudonymous UIDs (accounts.deid.uid_pseudonym); empty: SECRET_KEY.
MEDVAULT_DEID_UID_KEY = envstr("MEDVAULT_DEID_UID_KEY", "")
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("MEDVAULT_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

EMAIL_BACKEND = envstr("MEDVAULT_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = envstr("MEDVAULT_FROM_EMAIL", "medvault@localhost")

# Sessions live in the database so any number of app servers can serve them.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = envint("MEDVAULT_SESSION_SECONDS", 8 * 3600)
SESSION_COOKIE_SECURE = envbool("MEDVAULT_SECURE_COOKIES", not DEBUG and envbool("MEDVAULT_HTTPS", False))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy on HTML pages (medvault.ops.middleware); "" turns it off.
MEDVAULT_CSP = envstr(
    "MEDVAULT_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
if envbool("MEDVAULT_HTTPS", False):
    SECURE_SSL_REDIRECT = envbool("MEDVAULT_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = envint("MEDVAULT_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- Archive -------------------------------------------------------------------------
# Blob store: "filesystem" (default, under MEDVAULT_BLOB_DIR) or "s3" (see docs/operations.md).
MEDVAULT_BLOB_BACKEND = envstr("MEDVAULT_BLOB_BACKEND", "filesystem")
MEDVAULT_BLOB_DIR = Path(envstr("MEDVAULT_BLOB_DIR", str(DATA_DIR / "blobs"))).resolve()
MEDVAULT_S3_ENDPOINT_URL = envstr("MEDVAULT_S3_ENDPOINT_URL", "")
MEDVAULT_S3_BUCKET = envstr("MEDVAULT_S3_BUCKET", "")
MEDVAULT_S3_PREFIX = envstr("MEDVAULT_S3_PREFIX", "")
MEDVAULT_S3_REGION = envstr("MEDVAULT_S3_REGION", "")
MEDVAULT_S3_ACCESS_KEY_ID = envstr("MEDVAULT_S3_ACCESS_KEY_ID", "")
MEDVAULT_S3_SECRET_ACCESS_KEY = envstr("MEDVAULT_S3_SECRET_ACCESS_KEY", "")
# Lossless transfer syntax that pixel data is re-encoded into ("none" keeps what arrived).
MEDVAULT_COMPRESSION = envstr("MEDVAULT_COMPRESSION", "jpegls")
# Deferred: ingest stores what arrived (durable, bit-exact) and the worker compresses it
# later; false compresses inside ingest, before the sender gets its answer.
MEDVAULT_COMPRESSION_DEFERRED = envbool("MEDVAULT_COMPRESSION_DEFERRED", True)
# How long a blob replaced by its compressed form is kept (a backup in flight may need it).
MEDVAULT_COMPRESSION_KEEP_SECONDS = envint("MEDVAULT_COMPRESSION_KEEP_SECONDS", 3600)
# JPEG-XL encoder effort 1-9 (MEDVAULT_COMPRESSION=jpegxl): higher is smaller and slower.
MEDVAULT_JPEGXL_EFFORT = envint("MEDVAULT_JPEGXL_EFFORT", 3)
# Limits on what one upload may expand to.
MEDVAULT_MAX_UPLOAD_BYTES = envint("MEDVAULT_MAX_UPLOAD_BYTES", 2 * 1024**3)
MEDVAULT_MAX_IMAGE_PIXELS = envint("MEDVAULT_MAX_IMAGE_PIXELS", 64 * 1024 * 1024)
MEDVAULT_ZIP_MAX_TOTAL_BYTES = envint("MEDVAULT_ZIP_MAX_TOTAL_BYTES", 4 * 1024**3)
MEDVAULT_ZIP_MAX_RATIO = envint("MEDVAULT_ZIP_MAX_RATIO", 200)
MEDVAULT_ZIP_MAX_MEMBERS = envint("MEDVAULT_ZIP_MAX_MEMBERS", 100_000)
# Limits on one instance's shape (every door: upload, STOW-RS, C-STORE, CLI): levels of
# sequence nesting and elements in all (medvault.core.dicom.structure).
MEDVAULT_DICOM_MAX_DEPTH = envint("MEDVAULT_DICOM_MAX_DEPTH", 32)
MEDVAULT_DICOM_MAX_ELEMENTS = envint("MEDVAULT_DICOM_MAX_ELEMENTS", 500_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("MEDVAULT_MAX_FORM_BYTES", 10 * 1024**2)
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2
FILE_UPLOAD_TEMP_DIR = None

# OHIF Viewer at /ohif/ (medvault.ui.ohif): the prebuilt @ohif/app bundle fetched by
# scripts/fetch_ohif.sh; absent -> /ohif/ answers 503 with how to install it.
MEDVAULT_OHIF_DIR = Path(envstr("MEDVAULT_OHIF_DIR", str(BASE_DIR / ".ohif" / "dist"))).resolve()

# --- Analysis --------------------------------------------------------------------------
MEDVAULT_MODELS_DIR = Path(envstr("MEDVAULT_MODELS_DIR", str(BASE_DIR / "models"))).resolve()
MEDVAULT_AUTO_ANALYSE = envbool("MEDVAULT_AUTO_ANALYSE", True)
# Store each finished analysis in its study as DICOM (Comprehensive SR + heat-map Secondary
# Capture; medvault.analysis.dicom_results).
MEDVAULT_ANALYSIS_DICOM = envbool("MEDVAULT_ANALYSIS_DICOM", True)
MEDVAULT_JOB_LEASE_SECONDS = envint("MEDVAULT_JOB_LEASE_SECONDS", 300)
MEDVAULT_JOB_MAX_ATTEMPTS = envint("MEDVAULT_JOB_MAX_ATTEMPTS", 3)
# Seconds before a failed job is tried again, doubling per attempt (docs/background-work.md).
MEDVAULT_JOB_RETRY_SECONDS = envint("MEDVAULT_JOB_RETRY_SECONDS", 10)
MEDVAULT_WORKER_POLL_MS = envint("MEDVAULT_WORKER_POLL_MS", 100)
# Dotted path of the class that runs a model for the worker (tests inject fakes here).
MEDVAULT_ANALYSIS_BACKEND = envstr("MEDVAULT_ANALYSIS_BACKEND", "medvault.analysis.backends.OnnxBackend")

# --- Similar-image search (docs/retrieval.md) ------------------------------------------
# Where each server keeps its HNSW index files (rebuilt from the database when missing).
MEDVAULT_INDEX_DIR = Path(envstr("MEDVAULT_INDEX_DIR", str(DATA_DIR / "index"))).resolve()
MEDVAULT_EMBEDDING_DTYPE = envstr("MEDVAULT_EMBEDDING_DTYPE", "f16")  # f16 | i8
MEDVAULT_HNSW_CONNECTIVITY = envint("MEDVAULT_HNSW_CONNECTIVITY", 32)
MEDVAULT_HNSW_EXPANSION_ADD = envint("MEDVAULT_HNSW_EXPANSION_ADD", 256)
MEDVAULT_HNSW_EXPANSION_SEARCH = envint("MEDVAULT_HNSW_EXPANSION_SEARCH", 256)
MEDVAULT_INDEX_CHECK_SECONDS = envint("MEDVAULT_INDEX_CHECK_SECONDS", 60)
MEDVAULT_INDEX_SAVE_SECONDS = envint("MEDVAULT_INDEX_SAVE_SECONDS", 30)
MEDVAULT_SIMILAR_MAX_K = envint("MEDVAULT_SIMILAR_MAX_K", 100)

# --- DICOM network ---------------------------------------------------------------------
MEDVAULT_DICOM_AE_TITLE = envstr("MEDVAULT_DICOM_AE_TITLE", "MEDVAULT")
MEDVAULT_DICOM_HOST = envstr("MEDVAULT_DICOM_HOST", "127.0.0.1")
MEDVAULT_DICOM_PORT = envint("MEDVAULT_DICOM_PORT", 11112)
MEDVAULT_DICOM_ACCEPT_UNKNOWN_AE = envbool("MEDVAULT_DICOM_ACCEPT_UNKNOWN_AE", False)
# A configured AE title counts only when called from that AE's configured host: a title is
# easily copied, the address it comes from less so.
MEDVAULT_DICOM_CHECK_HOST = envbool("MEDVAULT_DICOM_CHECK_HOST", True)
MEDVAULT_DICOM_CHECK_CALLED_AE = envbool("MEDVAULT_DICOM_CHECK_CALLED_AE", True)
MEDVAULT_DICOM_MAX_ASSOCIATIONS = envint("MEDVAULT_DICOM_MAX_ASSOCIATIONS", 32)
# Most matches one QIDO-RS query returns (clients page with limit/offset).
MEDVAULT_QIDO_MAX_RESULTS = envint("MEDVAULT_QIDO_MAX_RESULTS", 1000)
MEDVAULT_DICOM_TLS_CERT = envstr("MEDVAULT_DICOM_TLS_CERT", "")
MEDVAULT_DICOM_TLS_KEY = envstr("MEDVAULT_DICOM_TLS_KEY", "")
# Storage commitment reports (N-EVENT-REPORT): the first retry after this many seconds,
# doubling up to an hour between attempts, at most this many attempts (about 2.5 h in all).
MEDVAULT_DICOM_COMMITMENT_RETRY_SECONDS = envint("MEDVAULT_DICOM_COMMITMENT_RETRY_SECONDS", 5)
MEDVAULT_DICOM_COMMITMENT_MAX_ATTEMPTS = envint("MEDVAULT_DICOM_COMMITMENT_MAX_ATTEMPTS", 12)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("MEDVAULT_LOG_LEVEL", "INFO")},
}
