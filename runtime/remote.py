"""Progressive fetch over HTTP: a stream stored as a plain file, fetched in byte ranges, level by level.

Any server that implements range requests (nginx, an object store, a CDN, Starlette's
``StaticFiles``) serves streams as they are. A :class:`RemoteStream` holds the bytes of one
remote stream fetched so far and asks for more on demand:

1. **Prefix.** The first request asks for ``bytes=0-(initial_bytes-1)`` (or one bandwidth-delay
   product, when the policy describes a link and that is more): the header, z and the level
   table (docs/bitstream.md 2.1-2.2) of an ordinary stream, and often a few levels.
   When the prefix ends before the table (a large z), the next request reaches z's end plus
   ``table_allowance`` bytes, and doubles again only in the rare case that was still short.
2. **Levels.** Once the table is known, every level's end is known, and ``Decoder.fetch``
   asks for ranges that end exactly on level boundaries (``fetch_to``), batching levels per
   :meth:`FetchPolicy.batch_size`.

Every request carries ``If-Range`` with the first answer's ETag (or Last-Modified), so a file
replaced mid-fetch is detected instead of splicing two streams; a 200 with the full body (a
server that ignores ``Range``) is read, within the byte cap, and used. Timeouts, bounded
retries with exponential backoff (resuming after the bytes already received), redirects and a
per-stream byte cap come from :class:`FetchPolicy`. Every failure is a
:class:`~edge_sdk.runtime.errors.FetchError` subclass. The protocol, the batching policy and
what each fault gives are in docs/streaming.md.

The HTTP client is urllib3 (the ``[net]`` extra), imported only when a pool is made, so
``import edge_sdk`` stays light.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Optional
from urllib.parse import urljoin

from . import bitstream as bs
from .errors import (
    BitstreamError,
    ByteCapError,
    ConnectionLostError,
    FetchError,
    FetchTimeoutError,
    HTTPStatusError,
    RangeNotSatisfiableError,
    RemoteStreamError,
    RemoteTruncatedError,
    StreamChangedError,
    TruncatedStreamError,
)

#: ``Content-Range`` of a 206 answer and of a 416 answer (RFC 9110 14.4)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
#: statuses that a retry may cure: an overloaded or restarting server or proxy
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: body bytes read per socket read
_READ_BLOCK = 16 << 10


@dataclass(frozen=True)
class FetchPolicy:
    """How a :class:`RemoteStream` talks to the server; every limit is per stream.

    Batching: a request after the prefix ends on a checkpoint level (the levels where the
    controller is consulted; fetching between them only adds round trips). The first such
    request reaches at least the first checkpoint past ``answer_fraction`` of the stream's
    bytes (where the controller usually answers, if you know it for your photos; 0: the
    next checkpoint). The n-th request after the prefix (n = 0, 1, ...) covers
    ``batch_size × batch_growth^n`` checkpoints: a controller that has not answered yet is ever
    less likely to answer at the very next checkpoint, and growing batches bound the round
    trips of a stream the controller never trusts to a logarithm of its length.
    """

    #: bytes of the first request: header, z and level table of an ordinary stream
    initial_bytes: int = 1024
    #: when the prefix ended inside z or the table: the next request reaches z's end plus this
    table_allowance: int = 256
    #: the first request after the prefix reaches at least this fraction of the stream's bytes
    answer_fraction: float = 0.0
    #: checkpoints per request when no link is described
    checkpoints_per_request: int = 1
    #: each request after the prefix covers this many times the checkpoints of the one before (1: constant)
    batch_growth: float = 2.0
    #: round-trip time of the link in seconds; with ``link_bandwidth_bps`` it sets the batch size
    link_rtt_s: Optional[float] = None
    #: bandwidth of the link in bits per second
    link_bandwidth_bps: Optional[float] = None
    connect_timeout_s: float = 5.0
    #: the longest wait for any one socket read (headers or a body block)
    read_timeout_s: float = 10.0
    #: the longest one request may take from sending to the end of its body (a trickling server)
    request_timeout_s: float = 30.0
    #: further tries after a timeout, a lost connection, a short body or a 5xx/408/429
    retries: int = 2
    #: seconds before the first retry; doubled before each next one
    backoff_s: float = 0.1
    max_redirects: int = 3
    #: the most bytes one stream may fetch (a 200 full body included)
    max_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        if self.initial_bytes < 16:
            raise ValueError("initial_bytes must be at least 16 (the header's fixed part and more)")
        if self.table_allowance < 1 or self.checkpoints_per_request < 1:
            raise ValueError("table_allowance and checkpoints_per_request must be >= 1")
        if self.batch_growth < 1.0:
            raise ValueError(f"batch_growth must be >= 1, got {self.batch_growth}")
        if not 0.0 <= self.answer_fraction <= 1.0:
            raise ValueError(f"answer_fraction must lie in [0, 1], got {self.answer_fraction}")
        if (self.link_rtt_s is None) != (self.link_bandwidth_bps is None):
            raise ValueError("describe the link with both link_rtt_s and link_bandwidth_bps, or neither")
        if self.link_rtt_s is not None and (self.link_rtt_s < 0 or self.link_bandwidth_bps <= 0):
            raise ValueError("link_rtt_s must be >= 0 and link_bandwidth_bps > 0")
        if min(self.connect_timeout_s, self.read_timeout_s, self.request_timeout_s) <= 0:
            raise ValueError("timeouts must be positive")
        if self.retries < 0 or self.backoff_s < 0 or self.max_redirects < 0 or self.max_bytes < 1:
            raise ValueError("retries, backoff_s and max_redirects must be >= 0, max_bytes >= 1")

    @property
    def round_trip_bytes(self) -> Optional[float]:
        """The link's bandwidth-delay product in bytes (None without a link): sending that many
        bytes takes as long as one extra round trip."""
        if self.link_rtt_s is None:
            return None
        return self.link_rtt_s * self.link_bandwidth_bps / 8

    @property
    def first_request_bytes(self) -> int:
        """Bytes of the first request: ``initial_bytes``, or one bandwidth-delay product when a
        link is described and that is more (the same rule as :meth:`batch_size`)."""
        return max(self.initial_bytes, int(self.round_trip_bytes or 0))

    def batch_size(self, bytes_per_checkpoint: float, request: int = 0) -> int:
        """Checkpoints the ``request``-th request after the prefix covers. The base: with a link
        described, as many as one bandwidth-delay product holds (an extra round trip costs as
        much time as RTT × bandwidth bytes, so fetching fewer than that per request loses more
        to waiting than it saves in bytes); else ``checkpoints_per_request``. Then × ``batch_growth``
        per request before it."""
        if self.round_trip_bytes is None:
            base = self.checkpoints_per_request
        else:
            base = max(1, int(self.round_trip_bytes // max(bytes_per_checkpoint, 1.0)))
        return max(1, int(base * self.batch_growth ** request))


@dataclass
class FetchStats:
    """What fetching one stream cost."""

    url: str
    #: body bytes received, retried parts included
    bytes_fetched: int = 0
    #: HTTP requests sent, retries included
    requests: int = 0
    #: requests plus the redirect hops they followed: the round trips a link model charges
    round_trips: int = 0
    retries: int = 0
    redirects: int = 0
    #: the deepest level the fetched bytes complete
    levels_fetched: int = 0
    #: the file's size on the server, once an answer said it
    stream_size: Optional[int] = None
    #: the server ignored Range and sent the whole file
    full_body: bool = False
    #: wall-clock milliseconds from the first request to the answer (or the failure)
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["elapsed_ms"] = round(self.elapsed_ms, 1)
        return out


def http_pool(policy: FetchPolicy = FetchPolicy(), maxsize: int = 4) -> Any:
    """A urllib3 ``PoolManager`` for fetching streams: keeps up to ``maxsize`` connections per
    host alive for reuse and blocks further requests until one is free, so ``maxsize`` bounds
    the open connections. Share one between the fetches of a batch; ``clear()`` closes it."""
    try:
        import urllib3
    except ImportError as exc:  # the [net] extra is optional: say which one
        raise ImportError("fetching streams over HTTP needs urllib3: pip install 'edge-sdk[net]'") from exc
    return urllib3.PoolManager(num_pools=16, maxsize=maxsize, block=True,
                               timeout=urllib3.Timeout(connect=policy.connect_timeout_s, read=policy.read_timeout_s),
                               retries=False)


class _Retry(Exception):
    """A failure another try may cure; ``error`` is what to raise when the tries run out."""

    def __init__(self, error: FetchError):
        super().__init__(str(error))
        self.error = error


class RemoteStream:
    """The bytes of one stream behind ``url``, fetched on demand with HTTP range requests.

    ``open()`` reads the prefix (header, z, level table); ``fetch_to(end)`` makes sure the
    first ``end`` bytes are in ``data``. ``pool`` (from :func:`http_pool`) is shared between
    streams; without one the stream makes its own and closes it in :meth:`close`.
    """

    def __init__(self, url: str, policy: Optional[FetchPolicy] = None, pool: Any = None):
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.policy = policy or FetchPolicy()
        self._own_pool = pool is None
        self._pool = pool if pool is not None else http_pool(self.policy, maxsize=1)
        self._target = url  # where requests go: the last redirect's target once one was followed
        self.data = bytearray()
        #: the file's size on the server (None until an answer said it)
        self.size: Optional[int] = None
        self.etag: Optional[str] = None
        self.last_modified: Optional[str] = None
        self.header: Optional[bs.Header] = None
        self.table: Optional[bs.LevelTable] = None
        self.stats = FetchStats(url)
        self._started = time.perf_counter()

    # --- layout --------------------------------------------------------------------------------
    @property
    def level_ends(self) -> list[int]:
        """Bytes that complete each level (level 0 only until the table is in; empty before the header)."""
        return [] if self.header is None else bs.level_ends(self.header, self.table)

    @property
    def levels_held(self) -> int:
        """The deepest level whose bytes are all in ``data`` (-1: not even level 0)."""
        held = [i for i, end in enumerate(self.level_ends) if end <= len(self.data)]
        return held[-1] if held else -1

    def _parse_layout(self) -> None:
        """Header and table from the bytes so far, with the format's own parser (runtime/bitstream.py)."""
        try:
            if self.header is None:
                self.header = bs.try_parse_header(self.data)
            if self.header is not None and self.table is None and len(self.data) >= self.header.level0_end:
                self.table = bs.try_parse_table(self.data, self.header.level0_end)
        except BitstreamError as exc:
            raise RemoteStreamError(f"{self.url}: {exc}", url=self.url, stats=self.stats) from exc

    def open(self) -> None:
        """Fetch the prefix that holds the header, z and the level table."""
        self._get(0, min(self.policy.first_request_bytes, self.policy.max_bytes))
        self._parse_layout()
        while self.table is None:
            if self.size is not None and len(self.data) >= self.size:
                where = "header" if self.header is None else "z section" if len(self.data) < self.header.level0_end \
                    else "level table"
                cause = TruncatedStreamError(f"the file ends inside its {where} ({len(self.data)} bytes)")
                raise RemoteTruncatedError(f"{self.url}: {cause}", url=self.url, stats=self.stats) from cause
            if self.header is None or len(self.data) >= self.header.level0_end:  # the table is long: double
                want = len(self.data) + max(len(self.data), self.policy.table_allowance)
            else:
                want = self.header.level0_end + self.policy.table_allowance
            held = len(self.data)
            self.fetch_to(want)
            if len(self.data) == held:  # a server that answers with no new bytes: do not ask forever
                raise self._fail(HTTPStatusError, f"the server sent no bytes past {held}")
            self._parse_layout()
        self.stats.levels_fetched = max(self.levels_held, 0)

    def fetch_to(self, end: int) -> None:
        """Make sure ``data`` holds the first ``end`` bytes of the stream (fewer only when the file is
        shorter: the caller compares with ``len(data)``). Never asks past the stream's last level."""
        if self.size is not None:
            end = min(end, self.size)
        if self.table is not None:
            end = min(end, self.level_ends[-1])
        if end <= len(self.data):
            return
        if end > self.policy.max_bytes:
            raise ByteCapError(f"{self.url}: the stream needs {end} bytes, over the cap of {self.policy.max_bytes} "
                               "(FetchPolicy.max_bytes)", url=self.url, stats=self.stats)
        while len(self.data) < end:  # a server may answer a range with fewer bytes than asked (RFC 9110 14.1.1)
            held = len(self.data)
            self._get(held, end)
            if len(self.data) == held or self.stats.full_body:
                break
        if self.header is not None:
            self.stats.levels_fetched = max(self.levels_held, 0)

    def close(self) -> None:
        """Close the connections of a pool this stream made itself (a shared pool stays open)."""
        if self._own_pool:
            self._pool.clear()
        self.stats.elapsed_ms = (time.perf_counter() - self._started) * 1e3

    # --- HTTP ------------------------------------------------------------------------------------
    def _get(self, start: int, end: int) -> None:
        """Bytes ``[start, end)`` into ``data``, retrying what a retry may cure, resuming after the
        bytes that did arrive."""
        for attempt in range(self.policy.retries + 1):
            if attempt:
                self.stats.retries += 1
                time.sleep(self.policy.backoff_s * 2 ** (attempt - 1))
                start = len(self.data)
                if start >= end or (self.size is not None and start >= self.size):
                    return
            try:
                self._request(start, end)
                return
            except _Retry as retry:
                last = retry.error
        self.stats.elapsed_ms = (time.perf_counter() - self._started) * 1e3
        raise last

    def _fail(self, kind: type, message: str, **kw: Any) -> FetchError:
        return kind(f"{self.url}: {message}", url=self.url, stats=self.stats, **kw)

    def _request(self, start: int, end: int) -> None:
        import urllib3
        from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, ProtocolError, ResponseError
        from urllib3.exceptions import TimeoutError as UrllibTimeout

        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        # If-Range: "send the range only if the file is still the one this validator names, else all
        # of it"; a weak ETag may not be used there (RFC 9110 13.1.5), a date may
        validator = self.etag if self.etag and not self.etag.startswith("W/") else self.last_modified
        if validator:
            headers["If-Range"] = validator
        self.stats.requests += 1
        deadline = time.monotonic() + self.policy.request_timeout_s
        retry = urllib3.Retry(total=self.policy.max_redirects, connect=0, read=0, status=0, other=0,
                              redirect=self.policy.max_redirects, raise_on_redirect=True, raise_on_status=False)
        try:
            response = self._pool.request("GET", self._target, headers=headers, preload_content=False,
                                          redirect=True, retries=retry)
        except MaxRetryError as exc:
            self.stats.round_trips += 1
            reason = exc.reason
            if isinstance(reason, ResponseError):  # the redirect budget ran out
                raise self._fail(HTTPStatusError, f"more than {self.policy.max_redirects} redirects ({reason})")
            # NewConnectionError subclasses urllib3's timeout error for old callers' sake: a refusal is no timeout
            if isinstance(reason, (UrllibTimeout, TimeoutError)) and not isinstance(reason, NewConnectionError):
                raise _Retry(self._fail(FetchTimeoutError, f"no answer within the timeouts ({reason})"))
            raise _Retry(self._fail(ConnectionLostError, f"cannot reach the server ({reason})"))
        except UrllibTimeout as exc:
            self.stats.round_trips += 1
            raise _Retry(self._fail(FetchTimeoutError, f"no answer within the timeouts ({exc})"))
        except (HTTPError, OSError) as exc:
            self.stats.round_trips += 1
            raise _Retry(self._fail(ConnectionLostError, f"the connection failed ({exc})"))
        history = response.retries.history if response.retries is not None else ()
        hops = [h.redirect_location for h in history if h.redirect_location]
        self.stats.round_trips += 1 + len(hops)
        self.stats.redirects += len(hops)
        for location in hops:  # later ranges go straight to where the redirects led (each may be relative)
            self._target = urljoin(self._target, location)
        complete = False
        try:
            self._answer(response, start, end, deadline)
            complete = True
        except (ProtocolError, HTTPError, OSError) as exc:
            if isinstance(exc, (UrllibTimeout, TimeoutError)):
                raise _Retry(self._fail(FetchTimeoutError, f"the body stalled ({exc})"))
            raise _Retry(self._fail(ConnectionLostError, f"the connection broke inside the body after "
                                                         f"{len(self.data)} bytes ({exc})"))
        finally:
            if not complete:  # unread bytes would poison the next request on this connection
                response.close()
            response.release_conn()

    def _answer(self, response: Any, start: int, end: int, deadline: float) -> None:
        status = response.status
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None:
                raise self._fail(HTTPStatusError, f"206 with a malformed Content-Range "
                                                  f"{response.headers.get('Content-Range')!r}", status=206)
            first, last, total = int(match[1]), int(match[2]), match[3]
            if first != start or last < first:
                raise self._fail(HTTPStatusError, f"asked for bytes from {start}, got {first}-{last}", status=206)
            self._check_same_file(response, None if total == "*" else int(total))
            if last + 1 > self.policy.max_bytes:
                raise self._fail(ByteCapError, f"the answer reaches byte {last + 1}, over the cap of "
                                               f"{self.policy.max_bytes} (FetchPolicy.max_bytes)")
            self._read_body(response, last + 1 - first, deadline, self.data)
        elif status == 200:  # the whole file: a server that ignores Range, or If-Range found it changed
            self._check_same_file(response, None)
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > self.policy.max_bytes:
                raise self._fail(ByteCapError, f"the server sends the whole file ({length} bytes), over the cap "
                                               f"of {self.policy.max_bytes} (FetchPolicy.max_bytes)")
            # read aside: the bytes held stay intact (for the result at their last level) until the
            # whole body has arrived and is known to continue them
            body = bytearray()
            self._read_body(response, int(length) if length is not None and length.isdigit() else None, deadline,
                            body)
            if not body.startswith(self.data):
                raise self._fail(StreamChangedError, "the file's bytes differ from those fetched before: "
                                                     "it was replaced during the fetch")
            self.data = body
            self.stats.full_body = True
            self.size = len(self.data)
            self.stats.stream_size = self.size
        elif status == 416:
            match = _UNSATISFIED_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            total = int(match[1]) if match else None
            said = f"the file holds {total} bytes" if total is not None else "the file is shorter"
            raise self._fail(RangeNotSatisfiableError, f"416 for bytes {start}-{end - 1}: {said}"
                             + (f", {self.size} when the fetch began: it shrank or was replaced"
                                if self.size is not None else ""), status=416)
        elif status in RETRY_STATUSES:
            raise _Retry(self._fail(HTTPStatusError, f"HTTP {status} {response.reason or ''}".rstrip(),
                                    status=status))
        else:
            raise self._fail(HTTPStatusError, f"HTTP {status} {response.reason or ''}".rstrip(), status=status)

    def _check_same_file(self, response: Any, total: Optional[int]) -> None:
        """The answer describes the file the fetch began with (ETag, Last-Modified, size)."""
        etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        changed = []
        if self.etag is not None and etag is not None and etag != self.etag:
            changed.append(f"ETag {self.etag} → {etag}")
        if self.last_modified is not None and modified is not None and modified != self.last_modified:
            changed.append(f"Last-Modified {self.last_modified} → {modified}")
        if self.size is not None and total is not None and total != self.size:
            changed.append(f"size {self.size} → {total} bytes")
        if changed and self.data:
            raise self._fail(StreamChangedError, f"the file was replaced during the fetch ({'; '.join(changed)})")
        self.etag = self.etag or etag
        self.last_modified = self.last_modified or modified
        if total is not None:
            self.size = total
            self.stats.stream_size = total

    def _read_body(self, response: Any, expected: Optional[int], deadline: float, into: bytearray) -> None:
        """Append the body to ``into`` as it arrives (for a range, ``data`` itself: what arrived
        survives a broken connection, for the retry to resume after), within the deadline and the
        byte cap."""
        from urllib3.exceptions import ProtocolError

        received = 0
        while expected is None or received < expected:
            want = _READ_BLOCK if expected is None else min(_READ_BLOCK, expected - received)
            block = response.read1(want)  # what one socket read brings: the deadline is checked between reads
            if not block:
                break
            received += len(block)
            self.stats.bytes_fetched += len(block)
            if len(into) + len(block) > self.policy.max_bytes:
                raise self._fail(ByteCapError, f"the body passes the cap of {self.policy.max_bytes} bytes "
                                               "(FetchPolicy.max_bytes)")
            into += block
            if time.monotonic() > deadline:
                raise _Retry(self._fail(FetchTimeoutError, f"the body took longer than "
                                                           f"{self.policy.request_timeout_s} s"))
        if expected is not None and received < expected:
            raise ProtocolError(f"the body ended after {received} of {expected} bytes")
