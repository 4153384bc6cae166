#!/usr/bin/env python3
"""Measure the console against the real local Docker engine, in a pseudo-terminal.

  first-screen  time from start until the first full screen shows the workloads, with N
                standalone containers (default 200); median of several runs
  idle          CPU time and memory of a console left idle for D seconds while N containers
                each print R log lines a second (default 50 x 5/s), for pilothouse and, when
                given with --peer, another console on the same host

Containers carry the label pilothouse.bench=1 and are removed at the end. The image is built
locally from Debian's busybox-static (no registry needed).
"""

import argparse
import fcntl
import os
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import termios
import threading
import time

IMAGE = "pilothouse-bench/busybox:1"
LABEL = "pilothouse.bench=1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def docker(*args, check=True):
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


def ensure_image():
    if docker("image", "inspect", IMAGE, check=False).returncode == 0:
        return
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = os.path.join(tmp, "rootfs.tar")
        with tarfile.open(rootfs, "w") as tar:
            tar.add(busybox, arcname="bin/busybox")
            for applet in ["sh", "echo", "sleep", "usleep", "cat", "true"]:
                link = tarfile.TarInfo("bin/" + applet)
                link.type = tarfile.SYMTYPE
                link.linkname = "busybox"
                tar.addfile(link)
        docker("import", "--change", 'CMD ["/bin/sh"]', rootfs, IMAGE)


def cleanup():
    ids = docker("ps", "-aq", "--filter", "label=" + LABEL).stdout.split()
    if ids:
        docker("rm", "-f", *ids)


def start_containers(count, rate, group):
    pause_us = int(1_000_000 / rate) if rate > 0 else 0
    if pause_us:
        script = (
            'i=0; while true; do echo "bench line $i from $HOSTNAME"; '
            f"i=$((i+1)); usleep {pause_us}; done"
        )
    else:
        script = "while true; do sleep 3600; done"
    for i in range(count):
        args = ["run", "-d", "--name", f"pilothouse-bench-{i:03d}", "--label", LABEL]
        if group:
            args += ["--label", "pilothouse.group=bench"]
        docker(*args, IMAGE, "sh", "-c", script)


class Console:
    """A program on a pseudo-terminal whose output is drained in the background."""

    def __init__(self, argv, env, cols=200, rows=50):
        self.master, slave = os.openpty()
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.output = bytearray()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.5)
                if not ready:
                    if self.proc.poll() is not None:
                        return
                    continue
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.output += chunk
                if len(self.output) > 4_000_000:
                    del self.output[:-1_000_000]

    def wait_for(self, marker, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if marker in self.output:
                    return time.monotonic() - self.started
            time.sleep(0.002)
        raise TimeoutError(f"{marker!r} did not appear within {timeout}s")

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def memory_kib(self):
        values = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
        return values

    def stop(self):
        try:
            os.write(self.master, b"q")
            self.proc.wait(timeout=3)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


def console_env(tmp):
    env = dict(os.environ)
    env["TERM"] = "xterm-256color"
    for name in ("CONFIG", "DATA", "STATE"):
        env[f"PILOTHOUSE_{name}_DIR"] = os.path.join(tmp, name.lower())
    return env


def first_screen(binary, count, runs):
    cleanup()
    start_containers(count, 0, group=False)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            c = Console([binary], console_env(tmp))
            times.append(c.wait_for(b"pilothouse-bench-000", 20))
            c.stop()
    cleanup()
    print(f"first screen with {count} containers: median {statistics.median(times)*1000:.0f} ms "
          f"(runs: {', '.join(f'{t*1000:.0f}' for t in times)} ms)")


def idle(programs, count, rate, seconds):
    cleanup()
    start_containers(count, rate, group=False)
    time.sleep(3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in programs:
            c = Console(argv, console_env(tmp))
            c.wait_for(b"pilothouse-bench-0", 30)
            time.sleep(5)
            cpu0 = c.cpu_seconds()
            time.sleep(seconds)
            cpu1 = c.cpu_seconds()
            mem = c.memory_kib()
            c.stop()
            rows.append((name, (cpu1 - cpu0) / seconds * 100, mem["VmRSS"], mem["VmHWM"]))
    cleanup()
    print(f"idle for {seconds}s with {count} containers each logging {rate} lines/s:")
    print("| console | CPU (% of one core) | RSS at end (MiB) | peak RSS (MiB) |")
    print("|---|---|---|---|")
    for name, cpu, rss, hwm in rows:
        print(f"| {name} | {cpu:.2f} | {rss/1024:.1f} | {hwm/1024:.1f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["first-screen", "idle"])
    p.add_argument("--binary", default="target/release/pilothouse")
    p.add_argument("--peer", help="path of another console to measure beside pilothouse")
    p.add_argument("--containers", type=int)
    p.add_argument("--rate", type=float, default=5.0, help="log lines per second per container")
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    ensure_image()
    try:
        if a.mode == "first-screen":
            first_screen(a.binary, a.containers or 200, a.runs)
        else:
            programs = [("pilothouse", [a.binary])]
            if a.peer:
                programs.append((os.path.basename(a.peer), [a.peer]))
            idle(programs, a.containers or 50, a.rate, a.seconds)
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
