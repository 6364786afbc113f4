"""An OSS-compatible endpoint for tests: moto's S3 server behind a translating proxy.

oss2 (and so ossfs) pointed at an IP endpoint uses path-style URLs and a
near-S3 dialect.  ``OssTranslator`` closes the remaining gaps so that oss2
works against moto: header prefixes, XML namespaces and fields, bucket info,
appendable objects, delimiter paging and CRC64 checksums.
"""

from __future__ import annotations

import re
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

from oss2.utils import Crc64

from .moto import MotoServer
from .proxy import CHUNK, FaultProxy, Request, Response, Upstream, error_response

S3_NAMESPACE = re.compile(rb'\sxmlns(?::\w+)?="[^"]*"')
LIST_PARAMS = {"prefix", "delimiter", "marker", "max-keys", "encoding-type"}
OBJECT_SUBRESOURCES = {"uploadId", "uploads", "acl", "tagging", "append"}
HEADER_ALIASES = {"x-oss-object-acl": "x-amz-acl"}
BUCKET_FIELDS = {
    "Location": "oss-cn-test",
    "ExtranetEndpoint": "127.0.0.1",
    "IntranetEndpoint": "127.0.0.1",
    "StorageClass": "Standard",
}
XML = {"content-type": "application/xml"}
# Signatures are not checked.  moto treats unsigned reads as anonymous, and guesses the
# service from the signature, so signed requests carry this fixed S3 (v2-style) one.
AUTH = {"authorization": "AWS test:test"}


def crc64(chunks: Iterable[bytes]) -> int:
    """CRC64-ECMA of the concatenated chunks, as OSS computes it."""
    crc = Crc64()
    for data in chunks:
        crc.update(data)
    return crc.crc


def _split(path: str) -> tuple[str, str, str, dict[str, str]]:
    """Split a path-style request path into (object path, bucket, raw key, query)."""
    parts = urlsplit(path)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    return parts.path, bucket, key, dict(parse_qsl(parts.query, keep_blank_values=True))


def _to_oss_xml(body: bytes) -> bytes:
    """Drop the S3 namespace and add the fields oss2 requires in listings."""
    body = S3_NAMESPACE.sub(b"", body)
    if b"<ListMultipartUploadsResult" in body:  # moto leaves out the markers oss2 reads
        root = ET.fromstring(body)
        for tag in ("NextKeyMarker", "NextUploadIdMarker"):
            if root.find(tag) is None:
                ET.SubElement(root, tag).text = ""
        return ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    if b"<ListBucketResult" not in body and b"<ListAllMyBucketsResult" not in body:
        return body
    root = ET.fromstring(body)
    for contents in root.iter("Contents"):
        if contents.find("Type") is None:
            ET.SubElement(contents, "Type").text = "Normal"
    for bucket in root.iter("Bucket"):
        for tag, text in BUCKET_FIELDS.items():
            if bucket.find(tag) is None:
                ET.SubElement(bucket, tag).text = text
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def _xml_response(root: ET.Element) -> Response:
    return Response(200, dict(XML), ET.tostring(root, encoding="UTF-8", xml_declaration=True))


class OssTranslator:
    """``FaultProxy`` translator that makes moto's S3 server answer like OSS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._crcs: dict[str, int] = {}  # ETag -> CRC64 of that content
        self._appendable: set[str] = set()  # ETags of objects written by append

    # -- requests ------------------------------------------------------------
    def on_request(self, req: Request, upstream: Upstream) -> Response | None:
        """Map x-oss-* headers to S3 and serve what moto lacks locally."""
        req.headers = {
            HEADER_ALIASES.get(k, "x-amz-" + k[6:] if k.startswith("x-oss-") else k): v
            for k, v in req.headers.items()
        }
        if "authorization" in req.headers:  # "OSS id:sig" confuses moto's service detection
            req.headers.update(AUTH)
        path, bucket, key, query = _split(req.path)
        if req.method == "GET" and bucket and not key and "bucketInfo" in query:
            return self._bucket_info(bucket, upstream)
        if req.method == "POST" and key and "append" in query:
            return self._append(req, path, int(query.get("position", "0")), upstream)
        if req.method == "GET" and bucket and not key and query.get("delimiter"):
            if set(query) <= LIST_PARAMS:
                return self._list(bucket, query, upstream)
        if req.method == "PUT" and key and "x-amz-copy-source" not in req.headers:
            req.body = self._crc_tap(req, req.body)  # PutObject and UploadPart
        return None

    def _crc_tap(self, req: Request, body: Iterable[bytes]) -> Iterator[bytes]:
        """Pass the body through, leaving its CRC64 in ``req.notes["crc"]``."""
        crc = Crc64()
        for data in body:
            crc.update(data)
            yield data
        req.notes["crc"] = crc.crc

    def _bucket_info(self, bucket: str, upstream: Upstream) -> Response:
        """Answer ``GET /<bucket>?bucketInfo`` from moto's bucket list."""
        listing = ET.fromstring(S3_NAMESPACE.sub(b"", upstream.call("GET", "/", AUTH).read_body()))
        for node in listing.iter("Bucket"):
            if node.findtext("Name") == bucket:
                root = ET.Element("BucketInfo")
                info = ET.SubElement(root, "Bucket")
                fields = {
                    "Name": bucket,
                    "CreationDate": node.findtext("CreationDate") or "",
                    **BUCKET_FIELDS,
                }
                for tag, text in fields.items():
                    ET.SubElement(info, tag).text = text
                owner = ET.SubElement(info, "Owner")
                ET.SubElement(owner, "DisplayName").text = ET.SubElement(owner, "ID").text = "test"
                acl = ET.SubElement(info, "AccessControlList")
                ET.SubElement(acl, "Grant").text = "private"
                return _xml_response(root)
        return error_response(404, "NoSuchBucket", "The specified bucket does not exist.")

    def _append(self, req: Request, path: str, position: int, upstream: Upstream) -> Response:
        """Emulate AppendObject by rewriting the whole object in moto."""
        data = b"".join(req.body)
        current = upstream.call("GET", path, AUTH)
        if current.status == 404 and b"NoSuchKey" in current.read_body():
            existing = b""
        elif current.status != 200:
            return current
        else:
            existing = current.read_body()
            if current.headers.get("etag") not in self._appendable:
                return error_response(409, "ObjectNotAppendable", "The object is not appendable.")
        if position != len(existing):
            resp = error_response(409, "PositionNotEqualToLength", "Position is not equal to file length.")
            resp.headers["x-oss-next-append-position"] = str(len(existing))
            return resp
        content = existing + data
        headers = {
            k: v for k, v in req.headers.items() if k == "content-type" or k.startswith("x-amz-meta-")
        }
        put = upstream.call("PUT", path, {**headers, **AUTH}, content)
        if put.status != 200:
            return put
        etag = put.headers["etag"]
        crc = crc64([content])
        with self._lock:
            self._crcs[etag] = crc
            self._appendable.add(etag)
        return Response(
            200,
            {
                "etag": etag,
                "x-oss-next-append-position": str(len(content)),
                "x-oss-hash-crc64ecma": str(crc),
                "x-oss-object-type": "Appendable",
            },
        )

    def _list(self, bucket: str, query: dict[str, str], upstream: Upstream) -> Response:
        """ListObjects (v1) with a delimiter, paged here: moto repeats common
        prefixes on every page.  Reads moto's flat listing from the marker on."""
        prefix, delimiter, marker = query.get("prefix", ""), query["delimiter"], query.get("marker", "")
        max_keys = int(query.get("max-keys", "100"))
        entries: list[tuple[str, ET.Element | None]] = []  # (name, Contents or None for a prefix)
        truncated, after = False, marker
        while not truncated:
            params = urlencode({"prefix": prefix, "marker": after, "max-keys": min(max_keys + 1, 1000)})
            page = upstream.call("GET", f"/{bucket}?{params}", AUTH)
            if page.status != 200:
                return page
            root = ET.fromstring(S3_NAMESPACE.sub(b"", page.read_body()))
            for contents in root.iter("Contents"):
                after = name = contents.findtext("Key") or ""
                cut = name.find(delimiter, len(prefix))
                node: ET.Element | None = contents
                if cut >= 0:
                    name, node = name[: cut + len(delimiter)], None
                    if name <= marker or (entries and entries[-1][0] == name):
                        continue
                if len(entries) == max_keys:
                    truncated = True
                    break
                entries.append((name, node))
            if root.findtext("IsTruncated") != "true":
                break
        result = ET.Element("ListBucketResult")
        fields = {
            "Name": bucket,
            "Prefix": prefix,
            "Marker": marker,
            "MaxKeys": str(max_keys),
            "Delimiter": delimiter,
            "IsTruncated": "true" if truncated else "false",
        }
        if truncated:
            fields["NextMarker"] = entries[-1][0]
        for tag, text in fields.items():
            ET.SubElement(result, tag).text = text
        result.extend(node for _, node in entries if node is not None)
        for name, node in entries:
            if node is None:
                ET.SubElement(ET.SubElement(result, "CommonPrefixes"), "Prefix").text = name
        return _xml_response(result)

    # -- responses -----------------------------------------------------------
    def on_response(self, req: Request, resp: Response, upstream: Upstream) -> None:
        """Rewrite XML bodies and headers to OSS style and add CRC64 headers."""
        path, _, key, query = _split(req.path)
        data_get = req.method == "GET" and bool(key) and not set(query) & OBJECT_SUBRESOURCES
        xml = "xml" in resp.headers.get("content-type", "")
        if req.method != "HEAD" and (resp.status >= 300 or (xml and not data_get)):
            resp.body = _to_oss_xml(resp.read_body())
        headers = {
            "x-oss-" + k[6:] if k.startswith("x-amz-") else k: v for k, v in resp.headers.items()
        }
        headers.setdefault(
            "x-oss-request-id", headers.get("x-amzn-requestid") or uuid.uuid4().hex.upper()
        )
        if resp.status < 300 and key and "x-oss-hash-crc64ecma" not in headers:
            crc = None
            if "crc" in req.notes:  # PutObject / UploadPart: CRC of the body sent
                crc = req.notes["crc"]
                if "uploadId" not in query and "etag" in headers:
                    with self._lock:
                        self._crcs[headers["etag"]] = crc
            elif req.method in ("GET", "HEAD") and not set(query) & OBJECT_SUBRESOURCES:
                crc = self._object_crc(path, headers.get("etag"), upstream)
            elif req.method == "POST" and "uploadId" in query:  # CompleteMultipartUpload
                crc = self._object_crc(path, None, upstream)
            if crc is not None:
                headers["x-oss-hash-crc64ecma"] = str(crc)
        resp.headers = headers

    def _object_crc(self, path: str, etag: str | None, upstream: Upstream) -> int | None:
        """CRC64 of the object at ``path``: cached by ETag, else computed by reading it."""
        with self._lock:
            if etag in self._crcs:
                return self._crcs[etag]
        with upstream.open("GET", path, AUTH) as obj:
            if obj.status != 200:
                return None
            crc = crc64(iter(lambda: obj.read(CHUNK), b""))
            etag = obj.getheader("etag") or ""
        with self._lock:
            self._crcs[etag] = crc
        return crc


class OssServer:
    """OSS-compatible endpoint: moto behind a ``FaultProxy`` with an ``OssTranslator``.

    moto is started as a subprocess at construction unless ``moto_url`` is given;
    the proxy serves between ``start()`` and ``stop()`` (or inside ``with``).
    ``.endpoint`` is the URL for oss2/ossfs and ``.proxy`` injects faults.
    """

    def __init__(self, moto_url: str | None = None, *, port: int = 0) -> None:
        self._moto: MotoServer | None = None
        if moto_url is None:
            self._moto = MotoServer()
            moto_url = self._moto.url
        self.moto_url = moto_url
        self.proxy = FaultProxy(self.moto_url, translator=OssTranslator(), port=port)
        self.endpoint = self.proxy.url

    def start(self) -> None:
        """Start serving on ``.endpoint``."""
        self.proxy.start()

    def stop(self) -> None:
        """Stop the proxy, and moto if it was started here."""
        self.proxy.stop()
        if self._moto is not None:
            self._moto.stop()

    def create_bucket(self, name: str) -> None:
        """Create a bucket directly in moto."""
        resp = Upstream(self.moto_url).call("PUT", f"/{name}")
        if resp.status != 200:
            raise RuntimeError(f"create_bucket({name!r}) failed: {resp.status} {resp.body!r}")

    def __enter__(self) -> OssServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
