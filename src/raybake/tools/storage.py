"""Object storage for working_dir packages: S3 (boto3), Google Cloud Storage
(google-cloud-storage) and a shared directory (file://).

Each client library is optional (raybake's `s3` and `gcs` extras) and imported
only when its scheme is used. They find credentials and endpoints the way
their own tools do: boto3's chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, instance
roles; AWS_ENDPOINT_URL for an S3-compatible server), Google's application
default credentials (STORAGE_EMULATOR_HOST for an emulator)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from raybake.errors import UploadError
from raybake.files import atomic_writer

SCHEMES = ("s3", "gs", "file")


def put_if_absent(uri: str, source: Path) -> bool:
    """Store the file ``source`` at ``uri`` unless an object is there already
    (names are content-addressed: one there holds the same bytes). True when it uploaded."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return _s3_put(parsed.netloc, parsed.path.lstrip("/"), source, uri)
    if parsed.scheme == "gs":
        return _gs_put(parsed.netloc, parsed.path.lstrip("/"), source, uri)
    if parsed.scheme == "file":
        return _file_put(Path(unquote(parsed.path)), source)
    raise UploadError(f"raybake cannot upload to {uri}: it uploads to {', '.join(f'{s}://' for s in SCHEMES)}",
                      fix="upload the zip yourself (`--working-dir-zip FILE`) and name it with --working-dir-uri")


def _missing(package: str, extra: str) -> UploadError:
    return UploadError(f"uploading there needs {package}, which is not installed where raybake runs",
                       fix=f"install raybake with its `{extra}` extra (`uv tool install 'raybake[{extra}]'`, "
                           f"or `uv pip install {package}` into raybake's environment)")


def _s3_put(bucket: str, key: str, source: Path, uri: str) -> bool:
    try:
        import boto3
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:
        raise _missing("boto3", "s3") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "AWS")
    try:
        client = boto3.client("s3")
        try:
            client.head_object(Bucket=bucket, Key=key)
            return False
        except ClientError as exc:
            # S3 answers 403, not 404, for a missing key to credentials without s3:ListBucket:
            # then upload (the key is content-addressed, so at worst the same bytes again).
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound", "403",
                                                                   "AccessDenied", "Forbidden"):
                raise
        client.upload_file(str(source), bucket, key)
        return True
    except NoCredentialsError:
        raise UploadError(f"cannot upload {uri}: boto3 found no AWS credentials",
                          fix="set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                              "or run where an instance role applies") from None
    except (ClientError, Boto3Error) as exc:  # Boto3Error: upload_file's, which wraps S3's answer
        raise UploadError(f"cannot upload {uri}: S3 ({endpoint}) answered: {exc}",
                          fix="check that the bucket exists and that these credentials may read and write "
                              "it (s3:GetObject, s3:PutObject)") from None
    except (BotoCoreError, OSError) as exc:
        raise UploadError(f"cannot upload {uri}: {exc}",
                          fix="check the endpoint (AWS_ENDPOINT_URL for an S3-compatible server) and the "
                              "network") from None


def _gs_put(bucket: str, key: str, source: Path, uri: str) -> bool:
    try:
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage
    except ImportError:
        raise _missing("google-cloud-storage", "gcs") from None
    try:
        blob = storage.Client().bucket(bucket).blob(key)
        if blob.exists():
            return False
        # Generation 0: only when no object exists, so a concurrent upload of the same name is kept.
        blob.upload_from_filename(str(source), if_generation_match=0)
        return True
    except gexc.PreconditionFailed:
        return False
    except DefaultCredentialsError:
        raise UploadError(f"cannot upload {uri}: no Google Cloud credentials were found",
                          fix="run `gcloud auth application-default login`, or set "
                              "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file") from None
    except gexc.GoogleAPIError as exc:
        raise UploadError(f"cannot upload {uri}: {exc}",
                          fix="check that the bucket exists and that these credentials may read and write it "
                              "(storage.objects.get, storage.objects.create)") from None
    except OSError as exc:
        raise UploadError(f"cannot upload {uri}: {exc}", fix="check the network") from None


def _file_put(target: Path, source: Path) -> bool:
    if target.exists():
        return False
    if not target.parent.is_dir():
        raise UploadError(f"cannot upload to {target.parent}: it is not a directory",
                          fix="create the shared directory (mounted at the same path on every Ray node)")
    try:
        with atomic_writer(target) as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
    except OSError as exc:
        raise UploadError(f"cannot write {target}: {exc}", fix="check that the directory is writable") from None
    return True
