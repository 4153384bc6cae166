#!/usr/bin/env python3
"""Measure the console against a sandbox cluster of 10,000 pods, in a pseudo-terminal.

  first-screen  time from exec until the screen shows the workloads table listing every pod
                of namespace `bench` (its title reads `workloads N` and its first row is
                `bench/bench-00000`); median of several runs, each a new console
  filter        time from each keystroke of `/bench-0012` until the screen is redrawn with
                the filter as typed so far and its match count in the table's title; medians
                over several runs

The sandbox runs as `pilothouse sandbox --pods N` on a free loopback port, with a kubeconfig
written to a temporary directory; the console is the release binary reading only that
kubeconfig, and its Docker target points at a socket that does not exist (so no container of
the host shows among the pods). Output is read into a small terminal emulator (cursor moves,
erases and text; colours are dropped), and a screen counts as drawn once the bytes of its frame
have all arrived: a frame is written in one burst, so the first pause of 5 ms ends it.
"""

import argparse
import fcntl
import os
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time

COLS, ROWS = 200, 50
FILTER = "bench-0012"
FRAME_GAP = 0.005


class Screen:
    """Enough of a VT100 for what the console writes: CSI H, J, K and text."""

    def __init__(self, cols, rows):
        self.cols, self.rows = cols, rows
        self.grid = [[" "] * cols for _ in range(rows)]
        self.x = self.y = 0
        self.pending = b""

    def feed(self, data):
        data = self.pending + data
        self.pending = b""
        i, n = 0, len(data)
        while i < n:
            b = data[i]
            if b == 0x1B:
                end = self._escape(data, i)
                if end is None:
                    self.pending = data[i:]
                    return
                i = end
                continue
            if b in (0x0D,):
                self.x = 0
                i += 1
                continue
            if b == 0x0A:
                self.y = min(self.y + 1, self.rows - 1)
                i += 1
                continue
            if b < 0x20:
                i += 1
                continue
            length = 1 if b < 0x80 else 2 if b >= 0xC0 and b < 0xE0 else 3 if b < 0xF0 else 4
            if i + length > n:
                self.pending = data[i:]
                return
            ch = data[i:i + length].decode("utf-8", "replace")
            if self.y < self.rows and self.x < self.cols:
                self.grid[self.y][self.x] = ch
            self.x += 1
            i += length

    def _escape(self, data, i):
        """Apply the escape sequence at i; return the index after it, or None if incomplete."""
        if i + 1 >= len(data):
            return None
        kind = data[i + 1]
        if kind == ord("["):
            j = i + 2
            while j < len(data) and not 0x40 <= data[j] <= 0x7E:
                j += 1
            if j >= len(data):
                return None
            self._csi(data[i + 2:j].decode("ascii", "replace"), chr(data[j]))
            return j + 1
        if kind == ord("]"):
            j = i + 2
            while j < len(data):
                if data[j] == 0x07:
                    return j + 1
                if data[j] == 0x1B and j + 1 < len(data) and data[j + 1] == ord("\\"):
                    return j + 2
                j += 1
            return None
        return i + 2

    def _csi(self, params, final):
        if params.startswith("?"):
            return
        nums = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else []
        if final in "Hf":
            row = nums[0] if nums and nums[0] else 1
            col = nums[1] if len(nums) > 1 and nums[1] else 1
            self.y, self.x = min(row - 1, self.rows - 1), min(col - 1, self.cols - 1)
        elif final == "J":
            mode = nums[0] if nums else 0
            if mode == 2 or mode == 3:
                self.grid = [[" "] * self.cols for _ in range(self.rows)]
            elif mode == 0:
                self.grid[self.y][self.x:] = [" "] * (self.cols - self.x)
                for r in range(self.y + 1, self.rows):
                    self.grid[r] = [" "] * self.cols
        elif final == "K":
            mode = nums[0] if nums else 0
            if mode == 0:
                self.grid[self.y][self.x:] = [" "] * (self.cols - self.x)
            elif mode == 2:
                self.grid[self.y] = [" "] * self.cols
        elif final == "C":
            self.x = min(self.x + (nums[0] if nums and nums[0] else 1), self.cols - 1)
        elif final == "G":
            self.x = min((nums[0] if nums and nums[0] else 1) - 1, self.cols - 1)

    def text(self):
        return "\n".join("".join(row) for row in self.grid)


class Console:
    """A program on a pseudo-terminal, read into a Screen as its output arrives."""

    def __init__(self, argv, env):
        self.master, slave = os.openpty()
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.screen = Screen(COLS, ROWS)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)

    def _read(self, timeout):
        """Feed what arrives within `timeout` seconds; return the arrival time, or None."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return None
        try:
            chunk = os.read(self.master, 1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            raise RuntimeError(f"the console ended (exit {self.proc.poll()}):\n{self.screen.text()}")
        at = time.monotonic()
        self.screen.feed(chunk)
        return at

    def wait_for(self, drawn, timeout):
        """Read until `drawn(screen text)` holds at the end of a frame; return when that frame's
        last byte arrived."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            at = self._read(FRAME_GAP if last else 0.2)
            if at is not None:
                last = at
                continue
            if last is not None and drawn(self.screen.text()):
                return last
            last = None
        raise TimeoutError(f"the expected screen did not appear within {timeout}s:\n"
                           f"{self.screen.text()}")

    def drain(self, quiet):
        """Read until nothing arrives for `quiet` seconds."""
        while self._read(quiet) is not None:
            pass

    def key(self, data):
        os.write(self.master, data)
        return time.monotonic()

    def stop(self):
        try:
            os.write(self.master, b"\x1bq")
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


def start_sandbox(binary, pods, kubeconfig):
    proc = subprocess.Popen(
        [binary, "sandbox", "--listen", "127.0.0.1:0", "--pods", str(pods),
         "--kubeconfig-out", kubeconfig],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline().strip() if ready else ""
    if not line.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"the sandbox did not start: {line!r} {proc.stderr.read()}")
    return proc


def console_env(tmp, run):
    env = dict(os.environ)
    env["TERM"] = "xterm-256color"
    env["DOCKER_HOST"] = "unix://" + os.path.join(tmp, "no-docker.sock")
    env.pop("KUBECONFIG", None)
    for name in ("CONFIG", "DATA", "STATE"):
        env[f"PILOTHOUSE_{name}_DIR"] = os.path.join(tmp, f"run{run}", name.lower())
    return env


def full_table(pods):
    title = re.compile(rf"workloads {pods}\b")
    return lambda text: bool(title.search(text)) and "bench/bench-00000" in text


def filtered(typed):
    title = re.compile(rf"workloads \(/ {re.escape(typed)}\) \d+/\d+")
    return lambda text: bool(title.search(text))


def summary(name, values):
    ms = [v * 1000 for v in values]
    return (f"{name}: median {statistics.median(ms):.1f} ms "
            f"(range {min(ms):.1f}-{max(ms):.1f} ms, {len(ms)} samples)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["first-screen", "filter", "both"], nargs="?", default="both")
    p.add_argument("--binary", default="target/release/pilothouse")
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    firsts, keystrokes, narrowing = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = os.path.join(tmp, "kubeconfig")
        sandbox = start_sandbox(a.binary, a.pods, kubeconfig)
        try:
            argv = [a.binary, "--kubeconfig", kubeconfig, "--context", "sandbox",
                    "--namespace", "bench"]
            for run in range(a.runs):
                c = Console(argv, console_env(tmp, run))
                try:
                    firsts.append(c.wait_for(full_table(a.pods), 60) - c.started)
                    if a.mode != "first-screen":
                        c.drain(0.3)
                        c.key(b"/")
                        c.drain(0.3)
                        for n in range(1, len(FILTER) + 1):
                            c.drain(0.05)
                            sent = c.key(FILTER[n - 1].encode())
                            took = c.wait_for(filtered(FILTER[:n]), 10) - sent
                            keystrokes.append(took)
                            # Past `bench-0` each character cuts the rows tenfold.
                            if n > len("bench-0"):
                                narrowing.append(took)
                finally:
                    c.stop()
        finally:
            os.killpg(sandbox.pid, signal.SIGTERM)
            sandbox.wait(timeout=10)
    if a.mode != "filter":
        print(summary(f"first full screen, {a.pods} pods", firsts))
    if a.mode != "first-screen":
        print(summary(f"filter keystroke to redrawn screen, {a.pods} pods", keystrokes))
        print(summary("  keystrokes that narrow the rows (bench-00, -001, -0012)", narrowing))


if __name__ == "__main__":
    sys.exit(main())
