"""HTTP(S) and file:// downloads, written atomically and hashed while they stream."""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from pathlib import Path

from builder.core.atomic import atomic_file
from builder.core.errors import PfbuildError

log = logging.getLogger("pfbuild")

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0
USER_AGENT = "pfbuild (+https://github.com/pfbuild)"


class DownloadError(PfbuildError):
    """A URL could not be fetched; `reason` is short enough to list beside other mirrors."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot download {url}", reason, "check the URL or the network")


def download(url: str, dest: Path, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Fetch `url` into `dest` atomically; return the SHA-256 of what was written."""
    log.debug("GET %s", url)
    digest = hashlib.sha256()
    # file:// is a supported mirror scheme (local mirrors, offline tests).
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310
    try:
        with (
            urllib.request.urlopen(request, timeout=timeout) as response,  # noqa: S310
            atomic_file(dest) as tmp,
        ):
            expected = response.headers.get("Content-Length")
            size = 0
            with tmp.open("wb") as out:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            if expected is not None and int(expected) != size:
                raise DownloadError(url, f"truncated: got {size} of {expected} bytes")
    except urllib.error.HTTPError as exc:
        raise DownloadError(url, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(url, f"unreachable: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        if isinstance(exc, PfbuildError):
            raise
        raise DownloadError(url, f"failed: {exc}") from None
    return digest.hexdigest()


def fetch_bytes(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Fetch a small document (an index, a Release file) into memory."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        raise DownloadError(url, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(url, f"unreachable: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise DownloadError(url, f"failed: {exc}") from None
