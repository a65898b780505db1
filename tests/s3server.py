"""A real S3 API on loopback for the bucket tests and benchmarks: moto's server in its own process,
with authentication on (a wrong secret is refused as by AWS), and a small fault-injecting proxy
in front of it (every Nth object GET answers 503 SlowDown; a fixed latency per request).

    with S3Server() as s3:                       # moto_server on 127.0.0.1:<free port>
        s3.bucket("photos", versioned=True)
        s3.upload_folder(folder, "photos", "raw")
        with FaultProxy(s3.endpoint, fail_every=10, latency_s=0.02) as proxy:
            env = s3.env(proxy.endpoint)         # AWS_* variables a pixelscope run reads
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


class S3Server:
    """moto's S3 server (a subprocess), with IAM auth enforced and one admin key made for the tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.key_id = self.secret = ""

    def __enter__(self) -> S3Server:
        # the first 3 requests go unauthenticated: they make the user, its policy and its key
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self.port)
        iam = self._client("iam", "bootstrap", "bootstrap")
        iam.create_user(UserName="pixelscope-test")
        iam.put_user_policy(UserName="pixelscope-test", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="pixelscope-test")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)

    def _client(self, service: str, key_id: str, secret: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key_id, aws_secret_access_key=secret)

    def client(self) -> Any:
        return self._client("s3", self.key_id, self.secret)

    def env(self, endpoint: str | None = None, secret: str | None = None) -> dict[str, str]:
        """The standard AWS variables a process reads to reach this server (through a proxy's endpoint)."""
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": secret or self.secret,
                "AWS_ENDPOINT_URL": endpoint or self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def bucket(self, name: str, versioned: bool = False) -> None:
        c = self.client()
        c.create_bucket(Bucket=name)
        if versioned:
            c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def upload_folder(self, folder: Path, bucket: str, prefix: str, files: list[Path] | None = None) -> int:
        """Upload files (default: every file under folder) to bucket/prefix/<relative path>; bytes sent."""
        c, sent = self.client(), 0
        for f in files if files is not None else sorted(p for p in folder.rglob("*") if p.is_file()):
            data = f.read_bytes()
            c.put_object(Bucket=bucket, Key=f"{prefix}/{f.relative_to(folder).as_posix()}", Body=data)
            sent += len(data)
        return sent


class FaultProxy:
    """An HTTP proxy in front of the S3 server: every `fail_every`-th object GET answers 503 SlowDown
    (listings pass), and every request waits `latency_s` first. Headers go through untouched, so the
    client's SigV4 signature (which covers Host) still verifies."""

    def __init__(self, target: str, fail_every: int = 0, latency_s: float = 0.0):
        self.target = urlsplit(target)
        self.fail_every, self.latency_s = fail_every, latency_s
        self.gets = self.failed = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                if proxy.latency_s:
                    time.sleep(proxy.latency_s)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = urlsplit(self.path)
                is_object_get = self.command == "GET" and "/" in path.path.strip("/") and "list-type" not in path.query
                if is_object_get:
                    with proxy.lock:
                        proxy.gets += 1
                        fail = proxy.fail_every and proxy.gets % proxy.fail_every == 0
                        proxy.failed += bool(fail)
                    if fail:
                        msg = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                               b"<Message>Please reduce your request rate.</Message></Error>")
                        self.send_response(503)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(msg)))
                        self.end_headers()
                        self.wfile.write(msg)
                        return
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body, dict(self.headers.items()))
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    """`python tests/s3server.py proxy TARGET [--latency S] [--fail-every N]`: a FaultProxy in its own
    process (the benchmarks keep its CPU out of the measured one); prints its endpoint, serves until killed."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["proxy"])
    ap.add_argument("target")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fail-every", type=int, default=0)
    args = ap.parse_args()
    with FaultProxy(args.target, args.fail_every, args.latency) as proxy:
        print(proxy.endpoint, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
