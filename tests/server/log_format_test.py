#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""log_format (docs/operations.md, "Logs"), against the real daemon: the
same steps — start, allocate, a refused request, fd socket requests (one
holding a quote, a tab, a backslash and bytes that are not UTF-8), release,
SIGTERM — with logfmt, with `--log-format json` and with `log_format: json`
in the file. Every stderr line of a json run must be one JSON object with
ts (RFC 3339, UTC, milliseconds), level, msg and string values; the runs
must log the same lines (level, msg, keys in order).

usage: log_format_test.py PHYSPOOLD GEN_DIR
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import unittest

import grpc

import physpool_testlib as lib

PHYSPOOLD, GEN = sys.argv[1], sys.argv[2]
pb = lib.load_protos(GEN)
A = lib.TOKENS["alice"]
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LEVELS = {"debug", "info", "warn", "error"}
# The fd socket logs a request's first two words: a tenant controls them.
HOSTILE = b'"q\t\\\xff\xe2\x82(\xc3'


def parse_logfmt(line):
    """[(key, value bytes)] of one logfmt line; raises if it is not one."""
    out, i = [], 0
    while i < len(line):
        if line[i:i + 1] == b" ":
            i += 1
            continue
        eq = line.index(b"=", i)
        key = line[i:eq].decode()
        i = eq + 1
        if line[i:i + 1] == b'"':
            i += 1
            value = bytearray()
            while line[i:i + 1] != b'"':
                if line[i:i + 1] == b"\\":
                    i += 1
                    value += b"\n" if line[i:i + 1] == b"n" else line[i:i + 1]
                else:
                    value += line[i:i + 1]
                if i >= len(line):
                    raise ValueError(f"unterminated quote: {line!r}")
                i += 1
            i += 1
            if i < len(line) and line[i:i + 1] != b" ":
                raise ValueError(f"text after a quoted value: {line!r}")
            out.append((key, bytes(value)))
        else:
            end = line.find(b" ", i)
            end = len(line) if end < 0 else end
            out.append((key, line[i:end]))
            i = end
    return out


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"a key twice: {keys}")
    return pairs


def lines(log):
    if not log.endswith(b"\n"):
        raise AssertionError(f"the log does not end with a newline: {log[-200:]!r}")
    return log[:-1].split(b"\n")


class LogFormatTest(unittest.TestCase):
    def steps(self, d):
        """What every run does; returns its stderr once stopped."""
        call = d.call
        lease = call("Pool", "Allocate",
                     pb.AllocateRequest(bytes=65536, max_segments=1, label='a "label"\nx'),
                     pb.AllocateResponse, A).lease
        with self.assertRaises(grpc.RpcError) as e:
            call("Pool", "Allocate", pb.AllocateRequest(bytes=0), pb.AllocateResponse, A)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as e:
            call("Pool", "Allocate", pb.AllocateRequest(bytes=4096), pb.AllocateResponse,
                 "wrong-token")
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        fds_path = d.socket + ".fds"
        answer, fds = self.fd_request(fds_path, f"backing {lease.id} {A}".encode())
        self.assertTrue(answer.startswith(b"ok "), answer)
        for fd in fds:
            os.close(fd)
        answer, _ = self.fd_request(fds_path, b"backing " + HOSTILE + b" " + A.encode())
        self.assertTrue(answer.startswith(b"error "), answer)
        answer, _ = self.fd_request(fds_path, b"hello")
        self.assertTrue(answer.startswith(b"error INVALID_ARGUMENT"), answer)
        call("Pool", "Release", pb.ReleaseRequest(lease_id=lease.id), pb.ReleaseResponse, A)
        self.assertEqual(d.stop(), 0, d.final_log.decode(errors="replace"))
        return d.final_log

    @staticmethod
    def fd_request(path, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            s.sendall(line + b"\n")
            msg, fds, _, _ = socket.recv_fds(s, 4096, 16)
            return msg, fds

    def run_logfmt(self, **kw):
        """[[(key, value bytes)]] of a logfmt run."""
        out = []
        for line in lines(self.steps(lib.Daemon(PHYSPOOLD, **kw))):
            fields = parse_logfmt(line)
            self.assertEqual([k for k, _ in fields[:3]], ["ts", "level", "msg"], line)
            out.append(fields)
        return out

    def run_json(self, **kw):
        """[[(key, value str)]] of a json run: every line checked."""
        out = []
        for line in lines(self.steps(lib.Daemon(PHYSPOOLD, **kw))):
            try:
                # Strict: not UTF-8, a control character in a string, a key
                # twice or anything but an object each fail here.
                pairs = json.loads(line.decode("utf-8"), object_pairs_hook=no_duplicates)
            except (UnicodeDecodeError, ValueError) as e:
                self.fail(f"not a JSON object line: {e}: {line!r}")
            self.assertIsInstance(pairs, list, line)  # an object, not a scalar
            self.assertEqual([k for k, _ in pairs[:3]], ["ts", "level", "msg"], line)
            for k, v in pairs:
                self.assertIsInstance(v, str, f"{k} in {line!r}")
            fields = dict(pairs)
            self.assertRegex(fields["ts"], TS)
            self.assertEqual(len(fields["ts"]), 24, line)
            self.assertIn(fields["level"], LEVELS, line)
            self.assertTrue(fields["msg"], line)
            out.append(pairs)
        return out

    @staticmethod
    def shape(run):
        """The run's lines as (level, msg, keys), order aside (threads)."""
        def value(v):
            return v if isinstance(v, str) else v.decode()
        return sorted((value(f[1][1]), value(f[2][1]), tuple(k for k, _ in f)) for f in run)

    @staticmethod
    def fd_requests(run):
        return [dict(f)["request"] for f in run
                if f[2][1] in ("fd socket", b"fd socket")]

    def test_json_lines_match_logfmt_lines(self):
        debug = "log_level: debug\n"
        logfmt = self.run_logfmt(extra_yaml=debug)
        by_flag = self.run_json(extra_yaml=debug, args=["--log-format", "json"])
        by_key = self.run_json(extra_yaml=debug + "log_format: json\n")
        msgs = [f[2][1] for f in by_flag]
        for m in ("memory ready", "lease granted", "lease ended", "fd socket"):
            self.assertIn(m, msgs)
        self.assertEqual(self.shape(logfmt), self.shape(by_flag))
        self.assertEqual(self.shape(by_key), self.shape(by_flag))
        # The tenant's bytes: raw in logfmt (quoted, escaped), replaced by
        # U+FFFD where they are not UTF-8 in JSON.
        got = self.fd_requests(logfmt)
        self.assertIn(b"backing " + HOSTILE, got)
        self.assertIn(b"hello", got)
        got = self.fd_requests(by_flag)
        self.assertIn((b"backing " + HOSTILE).decode("utf-8", "replace"), got)
        self.assertIn("backing \"q\t\\\ufffd\ufffd(\ufffd", got)

    def test_the_flag_overrides_the_file(self):
        log = self.steps(lib.Daemon(PHYSPOOLD, extra_yaml="log_format: json\n",
                                    args=["--log-format=logfmt"]))
        for line in lines(log):
            self.assertTrue(line.startswith(b"ts="), line)

    def test_bad_values_and_check_config(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "p.yaml")
            with open(path, "w") as f:
                f.write(f"listen: {{unix: {tmp}/s.sock, tcp: ''}}\nmetrics: {{listen: ''}}\n"
                        "implicit_tenant: true\nlog_format: json\n")
            ok = subprocess.run([PHYSPOOLD, "--check-config", path], capture_output=True)
            self.assertEqual(ok.returncode, 0, ok.stderr)
            self.assertIn(b'log_format: "json"', ok.stdout)
            flag = subprocess.run([PHYSPOOLD, "--check-config", path, "--log-format", "logfmt"],
                                  capture_output=True)
            self.assertEqual(flag.returncode, 0, flag.stderr)
            self.assertIn(b'log_format: "logfmt"', flag.stdout)
            bad = subprocess.run([PHYSPOOLD, "--check-config", path, "--log-format", "yaml"],
                                 capture_output=True)
            self.assertEqual(bad.returncode, 2)
            self.assertIn(b"--log-format must be logfmt or json", bad.stderr)
            with open(path, "w") as f:
                f.write("implicit_tenant: true\nlog_format: text\n")
            bad = subprocess.run([PHYSPOOLD, "--check-config", path], capture_output=True)
            self.assertEqual(bad.returncode, 2)
            self.assertIn(f"{path}:2: log_format: must be logfmt or json".encode(), bad.stderr)
        usage = subprocess.run([PHYSPOOLD, "--help"], capture_output=True)
        self.assertIn(b"--log-format FORMAT", usage.stdout)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
